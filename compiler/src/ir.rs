//! The in-memory IR: modules of functions, each one block of SSA ops over typed tensors.
//!
//! Values are small index newtypes into their function's value table (`Value(u32)`), so a
//! function is plain data: cloning, comparing and rebuilding it is cheap and obvious. Function
//! arguments are the first values; every op result follows in op order. The text form (see
//! `print` and `parse`) is MLIR's generic syntax, and `parse(print(m)) == m` for every module.

use std::fmt;

/// A tensor element type. CFloat types carry their exponent bias as part of the type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ElemType {
    F32,
    F64,
    F16,
    BF16,
    I1,
    I8,
    I16,
    I32,
    I64,
    /// Tesla configurable float, printed `!dojo.cf8_143<7>` etc.
    CFloat(CFloatFormat, u8),
}

/// The four configurable float layouts of the Dojo whitepaper.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CFloatFormat {
    Cf8_143,
    Cf8_152,
    Cf16Shp,
    Cf16Uhp,
}

impl CFloatFormat {
    pub const ALL: [CFloatFormat; 4] =
        [CFloatFormat::Cf8_143, CFloatFormat::Cf8_152, CFloatFormat::Cf16Shp, CFloatFormat::Cf16Uhp];

    pub fn name(self) -> &'static str {
        match self {
            CFloatFormat::Cf8_143 => "cf8_143",
            CFloatFormat::Cf8_152 => "cf8_152",
            CFloatFormat::Cf16Shp => "cf16_shp",
            CFloatFormat::Cf16Uhp => "cf16_uhp",
        }
    }
}

impl ElemType {
    /// Storage size of one element in bytes.
    pub fn bytes(self) -> usize {
        match self {
            ElemType::F64 | ElemType::I64 => 8,
            ElemType::F32 | ElemType::I32 => 4,
            ElemType::F16 | ElemType::BF16 | ElemType::I16 => 2,
            ElemType::I1 | ElemType::I8 => 1,
            ElemType::CFloat(f, _) => match f {
                CFloatFormat::Cf8_143 | CFloatFormat::Cf8_152 => 1,
                CFloatFormat::Cf16Shp | CFloatFormat::Cf16Uhp => 2,
            },
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, ElemType::F32 | ElemType::F64 | ElemType::F16 | ElemType::BF16 | ElemType::CFloat(..))
    }

    /// The builtin keyword for the non-CFloat types (`f32`, `i1`, ...).
    pub fn keyword(self) -> Option<&'static str> {
        Some(match self {
            ElemType::F32 => "f32",
            ElemType::F64 => "f64",
            ElemType::F16 => "f16",
            ElemType::BF16 => "bf16",
            ElemType::I1 => "i1",
            ElemType::I8 => "i8",
            ElemType::I16 => "i16",
            ElemType::I32 => "i32",
            ElemType::I64 => "i64",
            ElemType::CFloat(..) => return None,
        })
    }

    pub fn from_keyword(s: &str) -> Option<ElemType> {
        Some(match s {
            "f32" => ElemType::F32,
            "f64" => ElemType::F64,
            "f16" => ElemType::F16,
            "bf16" => ElemType::BF16,
            "i1" => ElemType::I1,
            "i8" => ElemType::I8,
            "i16" => ElemType::I16,
            "i32" => ElemType::I32,
            "i64" => ElemType::I64,
            _ => return None,
        })
    }
}

/// A ranked tensor type with a static shape. Rank 0 is a scalar tensor.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    pub shape: Vec<usize>,
    pub elem: ElemType,
}

impl TensorType {
    pub fn new(shape: impl Into<Vec<usize>>, elem: ElemType) -> Self {
        TensorType { shape: shape.into(), elem }
    }
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn bytes(&self) -> usize {
        self.numel() * self.elem.bytes()
    }
}

/// A type as it appears in the text: a tensor, a bare element type, or a function type.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Type {
    Tensor(TensorType),
    Elem(ElemType),
    Function(Vec<Type>, Vec<Type>),
}

/// An attribute value. Lists of integers (shapes, dims) are dense `array<i64: ...>`.
#[derive(Clone, Debug)]
pub enum Attr {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    Ints(Vec<i64>),
    Floats(Vec<f64>),
    Array(Vec<Attr>),
    Type(Type),
    Dict(Vec<(String, Attr)>),
}

impl PartialEq for Attr {
    fn eq(&self, other: &Attr) -> bool {
        use Attr::*;
        match (self, other) {
            (Int(a), Int(b)) => a == b,
            // Bitwise, so NaN attributes compare equal to themselves and -0.0 != 0.0.
            (Float(a), Float(b)) => a.to_bits() == b.to_bits(),
            (Bool(a), Bool(b)) => a == b,
            (Str(a), Str(b)) => a == b,
            (Ints(a), Ints(b)) => a == b,
            (Floats(a), Floats(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
            }
            (Array(a), Array(b)) => a == b,
            (Type(a), Type(b)) => a == b,
            (Dict(a), Dict(b)) => a == b,
            _ => false,
        }
    }
}

impl Attr {
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Attr::Int(v) => Some(*v),
            _ => None,
        }
    }
    pub fn as_float(&self) -> Option<f64> {
        match self {
            Attr::Float(v) => Some(*v),
            Attr::Int(v) => Some(*v as f64),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Attr::Bool(v) => Some(*v),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Attr::Str(v) => Some(v),
            _ => None,
        }
    }
    pub fn as_ints(&self) -> Option<&[i64]> {
        match self {
            Attr::Ints(v) => Some(v),
            _ => None,
        }
    }
    pub fn as_dict(&self) -> Option<&[(String, Attr)]> {
        match self {
            Attr::Dict(v) => Some(v),
            _ => None,
        }
    }
}

/// An SSA value: an index into its function's value table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Value(pub u32);

impl Value {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Where a value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueDef {
    Arg(usize),
    Result { op: usize, index: usize },
}

/// One operation: `results = "name"(operands) {attrs} : (operand types) -> result types`.
#[derive(Clone, Debug, PartialEq)]
pub struct Op {
    /// Full name with dialect prefix, e.g. `aten.addmm.default`, `dojo.matmul`, `d1.copy`.
    pub name: String,
    pub operands: Vec<Value>,
    /// The first result value; results are consecutive values.
    pub first_result: Value,
    pub num_results: usize,
    /// Attributes sorted by name (MLIR dictionaries are sorted; `Func::push` sorts).
    pub attrs: Vec<(String, Attr)>,
}

impl Op {
    pub fn results(&self) -> impl Iterator<Item = Value> + '_ {
        (0..self.num_results).map(move |i| Value(self.first_result.0 + i as u32))
    }
    pub fn result(&self, i: usize) -> Value {
        Value(self.first_result.0 + i as u32)
    }
    pub fn attr(&self, name: &str) -> Option<&Attr> {
        self.attrs.iter().find(|(n, _)| n == name).map(|(_, a)| a)
    }
    pub fn dialect(&self) -> &str {
        self.name.split('.').next().unwrap_or("")
    }
}

/// A function: one block of ops with typed arguments and a terminator returning values.
#[derive(Clone, Debug, PartialEq)]
pub struct Func {
    pub name: String,
    /// Types of every value: arguments first, then op results in op order.
    pub value_types: Vec<Type>,
    pub num_args: usize,
    pub ops: Vec<Op>,
    pub returns: Vec<Value>,
    /// Declared result types (the function type); the verifier checks `returns` against them.
    pub result_types: Vec<Type>,
    /// Extra attributes of the `func.func` op besides its name and type.
    pub attrs: Vec<(String, Attr)>,
}

impl Func {
    pub fn new(name: impl Into<String>, arg_types: Vec<Type>) -> Func {
        Func {
            name: name.into(),
            num_args: arg_types.len(),
            value_types: arg_types,
            ops: Vec::new(),
            returns: Vec::new(),
            result_types: Vec::new(),
            attrs: Vec::new(),
        }
    }

    pub fn args(&self) -> impl Iterator<Item = Value> {
        (0..self.num_args as u32).map(Value)
    }
    pub fn arg(&self, i: usize) -> Value {
        Value(i as u32)
    }
    pub fn arg_types(&self) -> &[Type] {
        &self.value_types[..self.num_args]
    }

    pub fn ty(&self, v: Value) -> &Type {
        &self.value_types[v.index()]
    }

    /// The tensor type of a value, if it is a tensor.
    pub fn tensor(&self, v: Value) -> Option<&TensorType> {
        match self.value_types.get(v.index()) {
            Some(Type::Tensor(t)) => Some(t),
            _ => None,
        }
    }

    /// Append an op producing results of the given types; returns its first result.
    pub fn push(
        &mut self,
        name: impl Into<String>,
        operands: Vec<Value>,
        attrs: Vec<(String, Attr)>,
        result_types: Vec<Type>,
    ) -> Value {
        let first = Value(self.value_types.len() as u32);
        let n = result_types.len();
        let mut attrs = attrs;
        attrs.sort_by(|a, b| a.0.cmp(&b.0));
        self.value_types.extend(result_types);
        self.ops.push(Op { name: name.into(), operands, first_result: first, num_results: n, attrs });
        first
    }

    /// Set the returned values; the function's result types become their types.
    pub fn set_returns(&mut self, values: Vec<Value>) {
        self.result_types = values.iter().map(|v| self.ty(*v).clone()).collect();
        self.returns = values;
    }

    /// Where each value is defined.
    pub fn defs(&self) -> Vec<ValueDef> {
        let mut defs: Vec<ValueDef> = (0..self.num_args).map(ValueDef::Arg).collect();
        defs.resize(self.value_types.len(), ValueDef::Arg(usize::MAX));
        for (i, op) in self.ops.iter().enumerate() {
            for (r, v) in op.results().enumerate() {
                if let Some(d) = defs.get_mut(v.index()) {
                    *d = ValueDef::Result { op: i, index: r };
                }
            }
        }
        defs
    }

    /// For every value, the index of its defining op (None for arguments).
    pub fn def_ops(&self) -> Vec<Option<usize>> {
        self.defs()
            .into_iter()
            .map(|d| match d {
                ValueDef::Result { op, .. } => Some(op),
                ValueDef::Arg(_) => None,
            })
            .collect()
    }

    /// Number of uses of each value (operands and returns).
    pub fn use_counts(&self) -> Vec<usize> {
        let mut uses = vec![0; self.value_types.len()];
        for op in &self.ops {
            for v in &op.operands {
                if let Some(u) = uses.get_mut(v.index()) {
                    *u += 1;
                }
            }
        }
        for v in &self.returns {
            if let Some(u) = uses.get_mut(v.index()) {
                *u += 1;
            }
        }
        uses
    }

    /// Rebuild the function keeping only ops for which `keep` is true, renumbering values
    /// so that results stay consecutive in op order. Values of dropped ops must be unused.
    pub fn retain_ops(&mut self, keep: impl Fn(usize, &Op) -> bool) {
        let mut out = Func::new(self.name.clone(), self.arg_types().to_vec());
        out.attrs = self.attrs.clone();
        let mut map: Vec<Option<Value>> = vec![None; self.value_types.len()];
        for (i, a) in self.args().enumerate() {
            map[a.index()] = Some(Value(i as u32));
        }
        for (i, op) in self.ops.iter().enumerate() {
            if !keep(i, op) {
                continue;
            }
            let operands = op.operands.iter().map(|v| map[v.index()].unwrap_or(*v)).collect();
            let types = op.results().map(|v| self.ty(v).clone()).collect();
            let first = out.push(op.name.clone(), operands, op.attrs.clone(), types);
            for r in 0..op.num_results {
                map[op.result(r).index()] = Some(Value(first.0 + r as u32));
            }
        }
        out.returns = self.returns.iter().map(|v| map[v.index()].unwrap_or(*v)).collect();
        out.result_types = self.result_types.clone();
        *self = out;
    }
}

/// A module: functions in order, plus module attributes.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Module {
    pub funcs: Vec<Func>,
    pub attrs: Vec<(String, Attr)>,
}

impl Module {
    pub fn func(&self, name: &str) -> Option<&Func> {
        self.funcs.iter().find(|f| f.name == name)
    }
    pub fn attr(&self, name: &str) -> Option<&Attr> {
        self.attrs.iter().find(|(n, _)| n == name).map(|(_, a)| a)
    }
}

/// Shorthand for building a tensor type.
pub fn tensor(shape: &[usize], elem: ElemType) -> Type {
    Type::Tensor(TensorType::new(shape.to_vec(), elem))
}

/// Shorthand for an attribute entry.
pub fn attr(name: &str, value: Attr) -> (String, Attr) {
    (name.to_string(), value)
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0)
    }
}
