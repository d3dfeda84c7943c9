//! The MLIR bridge: graph-level (`dojo.*`) IR to standard MLIR, built with melior (LLVM/MLIR 22).
//!
//! [`emit_mlir`] translates every function into a `func.func` over builtin tensors whose body
//! uses only upstream dialects (`linalg`, `tensor`, `arith`, `math`), verifies the result with
//! MLIR's verifier and returns its text, so `dojo-opt --emit=mlir | mlir-opt-22 ...` works.
//! [`parse_with_mlir`] reads any of our IR dumps (generic syntax, unregistered `aten`/`dojo`/`d1`
//! ops and types) with a real MLIR context, which checks that the text form stays MLIR.
//!
//! The translation keeps the meaning that `dialect.rs` and the reference interpreter give the ops:
//!
//! | dojo op | MLIR |
//! |---|---|
//! | `matmul` (rank 2 / 3) | `tensor.empty` + `linalg.fill` 0.0 + `linalg.matmul` / `linalg.batch_matmul` |
//! | `matmul` `[d..., k] @ [k, n]` | `tensor.reshape` to `[rows, k]`, `linalg.matmul`, `tensor.reshape` back |
//! | unary, binary, `cmp`, `select` | `linalg.generic` with NumPy (right-aligned) broadcasting maps; `arith`/`math` body |
//! | `constant {value}` | `arith.constant dense<value>` |
//! | `reduce_sum {dims, keepdim}` | `linalg.fill` 0 + `linalg.reduce` (+ `tensor.expand_shape` for keepdim) |
//! | `transpose {perm}` | `linalg.transpose` |
//! | `reshape` | `tensor.reshape` with an `arith.constant` shape |
//! | `broadcast` | `linalg.broadcast` (new leading dims only) or `linalg.generic` (size-1 stretching) |
//! | `convert` | `arith.uitofp` / `arith.cmpf une 0` / `arith.sitofp` / `arith.fptosi` / `arith.extui` / `arith.cmpi ne 0` |
//!
//! A broadcast operand's indexing map drops its missing leading dims and reads index 0 of a
//! size-1 dim that the result stretches, e.g. `[128]` into `[32, 128]` is `(d0, d1) -> (d1)`
//! and `[1, 128]` is `(d0, d1) -> (0, d1)`. Scalar bodies: relu = `maximumf(x, 0)` (NaN stays
//! NaN, like the interpreter), sigmoid = `1 / (1 + exp(-x))`, reciprocal = `1 / x`,
//! maximum/minimum = `arith.maximumf`/`minimumf` (NaN-propagating), comparisons are ordered
//! except `ne`, which is `une` (true for NaN, like `!=`). Element types: f32, i1 and i64.
//!
//! melior's builders are used throughout; affine maps are built with [`AffineMap`] and, as
//! melior 0.27 has no affine-map attribute constructor, turned into attributes by parsing their
//! printed form (likewise `#linalg.iterator_type<...>`).

use dojo_compiler::dialect::{broadcast_shapes, check_dims, check_perm, FusedExpr, FusedOperand, COMPARE};
use dojo_compiler::{Attr, ElemType, Func, Module, Op, TensorType, Type as DType};
use melior::{
    dialect::DialectRegistry,
    ir::{
        attribute::{
            ArrayAttribute, DenseElementsAttribute, DenseI32ArrayAttribute, DenseI64ArrayAttribute,
            FloatAttribute, IntegerAttribute, StringAttribute, TypeAttribute,
        },
        operation::{OperationBuilder, OperationLike, OperationRef},
        r#type::{FunctionType, IntegerType, RankedTensorType},
        AffineExpr, AffineMap, Attribute, Block, BlockLike, Identifier, Location,
        Module as MlirModule, Operation, Region, RegionLike, Type, Value, ValueLike,
    },
    utility::register_all_dialects,
    Context,
};
use std::cell::RefCell;
use std::rc::Rc;

/// A context with every upstream dialect registered; threading off (small modules, and no
/// thread pool per call).
fn new_context(allow_unregistered: bool) -> Context {
    let registry = DialectRegistry::new();
    register_all_dialects(&registry);
    let context = Context::new_with_registry(&registry, false);
    context.set_allow_unregistered_dialects(allow_unregistered);
    context
}

/// Collects the context's diagnostics (instead of MLIR printing them to stderr).
#[derive(Clone, Default)]
struct Diagnostics(Rc<RefCell<Vec<String>>>);

impl Diagnostics {
    fn attach(context: &Context) -> Diagnostics {
        let diags = Diagnostics::default();
        let sink = diags.0.clone();
        context.attach_diagnostic_handler(move |d| {
            let mut text = format!("{}: {d}", d.location());
            for i in 0..d.note_count() {
                if let Ok(n) = d.note(i) {
                    text.push_str(&format!("\n  note: {}: {n}", n.location()));
                }
            }
            sink.borrow_mut().push(text);
            true
        });
        diags
    }

    fn text(&self) -> String {
        let d = self.0.borrow();
        if d.is_empty() {
            "(MLIR gave no diagnostic)".to_string()
        } else {
            d.join("\n")
        }
    }
}

/// Parse arbitrary IR text (our generic-syntax dumps with unregistered `aten`/`dojo`/`d1` ops
/// and types such as `!dojo.cf8_143<7>`) with a real MLIR context and verify it. `Err` carries
/// MLIR's diagnostics.
pub fn parse_with_mlir(text: &str) -> Result<(), String> {
    if text.contains('\0') {
        return Err("MLIR cannot parse text containing a NUL byte".into());
    }
    let context = new_context(true);
    let diags = Diagnostics::attach(&context);
    let module = MlirModule::parse(&context, text)
        .ok_or_else(|| format!("MLIR could not parse the module:\n{}", diags.text()))?;
    if !module.as_operation().verify() {
        return Err(format!("MLIR's verifier rejected the module:\n{}", diags.text()));
    }
    Ok(())
}

/// Translate graph-level IR (every op `dojo.*`) into standard MLIR (func, linalg, tensor,
/// arith, math), verify it with MLIR's verifier and return its text.
pub fn emit_mlir(module: &Module) -> Result<String, String> {
    for f in &module.funcs {
        for (i, op) in f.ops.iter().enumerate() {
            if op.dialect() != "dojo" {
                let hint = match op.dialect() {
                    "d1" => " (mesh-level IR: emit MLIR before lower-to-d1)",
                    _ => "",
                };
                return Err(format!(
                    "--emit=mlir takes graph-level IR: run legalize-aten first; found '{}' (op #{i} of @{}){hint}",
                    op.name, f.name
                ));
            }
        }
    }
    if let Err(errors) = dojo_compiler::verify(module) {
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        return Err(format!("--emit=mlir needs verified IR:\n{}", text.join("\n")));
    }

    let context = new_context(false);
    for d in ["func", "arith", "math", "linalg", "tensor"] {
        context.get_or_load_dialect(d);
    }
    let diags = Diagnostics::attach(&context);
    let cx = Cx::new(&context)?;
    let out = MlirModule::new(Location::unknown(&context));
    for f in &module.funcs {
        let func = cx.func(f)?;
        out.body().append_operation(func);
    }
    if !out.as_operation().verify() {
        return Err(format!(
            "internal error: the emitted MLIR does not verify:\n{}\n--- emitted module ---\n{}",
            diags.text(),
            out.as_operation()
        ));
    }
    Ok(out.as_operation().to_string())
}

/// The scalar computation in a linalg region, given its block arguments.
#[derive(Clone, Copy, Debug)]
enum Body<'s> {
    /// Yield the first argument (fill, transpose, broadcast, copy).
    Pass,
    /// `acc + a * b` (matmul).
    MulAdd(ElemType),
    /// `x + acc` (reduction).
    Add(ElemType),
    /// `max(x, acc)`, NaN-propagating (reduction).
    Max(ElemType),
    Unary(&'s str, ElemType),
    Binary(&'s str, ElemType),
    Cmp(&'s str, ElemType),
    Select,
    Convert(ElemType, ElemType),
    /// A fused chain (`dojo.fused`) over operands of these element types, every value an f32
    /// (bools as 0.0/1.0, as the mesh computes it).
    Fused(&'s FusedExpr, &'s [ElemType]),
}

/// Emission state for one context.
struct Cx<'c> {
    ctx: &'c Context,
    loc: Location<'c>,
    parallel: Attribute<'c>,
}

fn elem_name(e: ElemType) -> String {
    e.to_string()
}

impl<'c> Cx<'c> {
    fn new(ctx: &'c Context) -> Result<Cx<'c>, String> {
        let parse = |s: &str| Attribute::parse(ctx, s).ok_or(format!("internal error: MLIR cannot parse '{s}'"));
        Ok(Cx {
            ctx,
            loc: Location::unknown(ctx),
            parallel: parse("#linalg.iterator_type<parallel>")?,
        })
    }

    // ----- types and attributes -----

    fn elem(&self, e: ElemType) -> Result<Type<'c>, String> {
        match e {
            ElemType::F32 => Ok(Type::float32(self.ctx)),
            ElemType::I1 => Ok(IntegerType::new(self.ctx, 1).into()),
            ElemType::I64 => Ok(IntegerType::new(self.ctx, 64).into()),
            other => Err(format!("element type {} is not supported by --emit=mlir (only f32, i1 and i64 are)", elem_name(other))),
        }
    }

    fn tensor(&self, t: &TensorType) -> Result<Type<'c>, String> {
        let dims: Vec<u64> = t.shape.iter().map(|&d| d as u64).collect();
        Ok(RankedTensorType::new(&dims, self.elem(t.elem)?, None).into())
    }

    fn ty(&self, t: &DType) -> Result<Type<'c>, String> {
        match t {
            DType::Tensor(t) => self.tensor(t),
            DType::Elem(e) => self.elem(*e),
            DType::Function(..) => Err("function-typed values are not supported by --emit=mlir".into()),
        }
    }

    fn id(&self, name: &str) -> Identifier<'c> {
        Identifier::new(self.ctx, name)
    }

    fn i64_attr(&self, v: i64) -> Attribute<'c> {
        IntegerAttribute::new(IntegerType::new(self.ctx, 64).into(), v).into()
    }

    fn i64_array(&self, v: &[i64]) -> Attribute<'c> {
        DenseI64ArrayAttribute::new(self.ctx, v).into()
    }

    fn segments(&self, ins: usize, outs: usize) -> Attribute<'c> {
        DenseI32ArrayAttribute::new(self.ctx, &[ins as i32, outs as i32]).into()
    }

    fn map_attr(&self, map: AffineMap<'c>) -> Result<Attribute<'c>, String> {
        let text = format!("affine_map<{map}>");
        Attribute::parse(self.ctx, &text).ok_or(format!("internal error: MLIR cannot parse '{text}'"))
    }

    fn maps_attr(&self, maps: &[AffineMap<'c>]) -> Result<Attribute<'c>, String> {
        let attrs = maps.iter().map(|m| self.map_attr(*m)).collect::<Result<Vec<_>, _>>()?;
        Ok(ArrayAttribute::new(self.ctx, &attrs).into())
    }

    /// The indexing map of an operand of shape `shape` broadcast (NumPy, right-aligned) into a
    /// result of shape `out`: missing leading dims are dropped, stretched size-1 dims read 0.
    fn broadcast_map(&self, shape: &[usize], out: &[usize]) -> AffineMap<'c> {
        let off = out.len() - shape.len();
        let exprs: Vec<AffineExpr<'c>> = shape
            .iter()
            .enumerate()
            .map(|(d, &n)| {
                if n == 1 && out[off + d] != 1 {
                    AffineExpr::constant(self.ctx, 0)
                } else {
                    AffineExpr::dim(self.ctx, off + d)
                }
            })
            .collect();
        AffineMap::new(self.ctx, out.len(), 0, &exprs)
    }

    fn dims_map(&self, num_dims: usize, dims: &[usize]) -> AffineMap<'c> {
        let exprs: Vec<AffineExpr<'c>> = dims.iter().map(|&d| AffineExpr::dim(self.ctx, d)).collect();
        AffineMap::new(self.ctx, num_dims, 0, &exprs)
    }

    // ----- building operations -----

    fn build(
        &self,
        name: &str,
        operands: &[Value<'c, '_>],
        results: &[Type<'c>],
        attrs: &[(&str, Attribute<'c>)],
        regions: Vec<Region<'c>>,
    ) -> Result<Operation<'c>, String> {
        let attrs: Vec<(Identifier<'c>, Attribute<'c>)> = attrs.iter().map(|(n, a)| (self.id(n), *a)).collect();
        OperationBuilder::new(name, self.loc)
            .add_operands(operands)
            .add_results(results)
            .add_attributes(&attrs)
            .add_regions_vec(regions)
            .build()
            .map_err(|e| format!("internal error: cannot build '{name}': {e}"))
    }

    /// Append an op with one result to `block`; returns the result.
    fn op1<'a>(
        &self,
        block: &'a Block<'c>,
        name: &str,
        operands: &[Value<'c, '_>],
        result: Type<'c>,
        attrs: &[(&str, Attribute<'c>)],
        regions: Vec<Region<'c>>,
    ) -> Result<Value<'c, 'a>, String> {
        let op: OperationRef<'c, 'a> = block.append_operation(self.build(name, operands, &[result], attrs, regions)?);
        op.result(0).map(Into::into).map_err(|e| format!("internal error: '{name}' has no result: {e}"))
    }

    /// A scalar constant inside a region body.
    fn scalar_const<'a>(&self, block: &'a Block<'c>, e: ElemType, v: f64) -> Result<Value<'c, 'a>, String> {
        let t = self.elem(e)?;
        let a: Attribute<'c> = match e {
            ElemType::F32 => FloatAttribute::new(self.ctx, t, v).into(),
            _ => IntegerAttribute::new(t, v as i64).into(),
        };
        self.op1(block, "arith.constant", &[], t, &[("value", a)], vec![])
    }

    /// The scalar computation of `body` appended to `b`, on arguments `args`.
    fn scalar<'a>(&self, b: &'a Block<'c>, body: Body<'_>, args: &[Value<'c, 'a>]) -> Result<Value<'c, 'a>, String> {
        use ElemType::{F32, I1, I64};
        let arg = |i: usize| args.get(i).copied().ok_or_else(|| format!("internal error: region argument #{i} missing"));
        let x = arg(0)?;
        match body {
            Body::Pass => Ok(x),
            Body::MulAdd(e) => {
                let t = self.elem(e)?;
                let (mul, add) = match e {
                    F32 => ("arith.mulf", "arith.addf"),
                    I64 => ("arith.muli", "arith.addi"),
                    other => return Err(format!("matmul of {} is not supported", elem_name(other))),
                };
                let p = self.op1(b, mul, &[x, arg(1)?], t, &[], vec![])?;
                self.op1(b, add, &[arg(2)?, p], t, &[], vec![])
            }
            Body::Add(e) => {
                let add = match e {
                    F32 => "arith.addf",
                    I64 => "arith.addi",
                    other => return Err(format!("summing {} is not supported", elem_name(other))),
                };
                self.op1(b, add, &[x, arg(1)?], self.elem(e)?, &[], vec![])
            }
            Body::Max(e) => {
                if e != F32 {
                    return Err(format!("max-reducing {} is not supported", elem_name(e)));
                }
                self.op1(b, "arith.maximumf", &[x, arg(1)?], self.elem(e)?, &[], vec![])
            }
            Body::Unary(f, e) => {
                let t = self.elem(e)?;
                let un = |name: &str| self.op1(b, name, &[x], t, &[], vec![]);
                match (f, e) {
                    ("relu", F32) => {
                        let zero = self.scalar_const(b, e, 0.0)?;
                        self.op1(b, "arith.maximumf", &[x, zero], t, &[], vec![])
                    }
                    ("neg", F32) => un("arith.negf"),
                    ("exp", F32) => un("math.exp"),
                    ("log", F32) => un("math.log"),
                    ("sqrt", F32) => un("math.sqrt"),
                    ("rsqrt", F32) => un("math.rsqrt"),
                    ("abs", F32) => un("math.absf"),
                    ("tanh", F32) => un("math.tanh"),
                    ("erf", F32) => un("math.erf"),
                    ("sigmoid", F32) => {
                        let n = un("arith.negf")?;
                        let ex = self.op1(b, "math.exp", &[n], t, &[], vec![])?;
                        let one = self.scalar_const(b, e, 1.0)?;
                        let den = self.op1(b, "arith.addf", &[one, ex], t, &[], vec![])?;
                        self.op1(b, "arith.divf", &[one, den], t, &[], vec![])
                    }
                    ("reciprocal", F32) => {
                        let one = self.scalar_const(b, e, 1.0)?;
                        self.op1(b, "arith.divf", &[one, x], t, &[], vec![])
                    }
                    ("relu", I64) => {
                        let zero = self.scalar_const(b, e, 0.0)?;
                        self.op1(b, "arith.maxsi", &[x, zero], t, &[], vec![])
                    }
                    ("neg", I64) => {
                        let zero = self.scalar_const(b, e, 0.0)?;
                        self.op1(b, "arith.subi", &[zero, x], t, &[], vec![])
                    }
                    ("abs", I64) => un("math.absi"),
                    _ => Err(format!("'{f}' on {} is not supported", elem_name(e))),
                }
            }
            Body::Binary(f, e) => {
                let t = self.elem(e)?;
                let name = match (f, e) {
                    ("add", F32) => "arith.addf",
                    ("sub", F32) => "arith.subf",
                    ("mul", F32) => "arith.mulf",
                    ("div", F32) => "arith.divf",
                    ("maximum", F32) => "arith.maximumf",
                    ("minimum", F32) => "arith.minimumf",
                    ("pow", F32) => "math.powf",
                    ("add", I64) => "arith.addi",
                    ("sub", I64) => "arith.subi",
                    ("mul", I64) => "arith.muli",
                    ("maximum", I64) => "arith.maxsi",
                    ("minimum", I64) => "arith.minsi",
                    _ => return Err(format!("'{f}' on {} is not supported", elem_name(e))),
                };
                self.op1(b, name, &[x, arg(1)?], t, &[], vec![])
            }
            Body::Cmp(pred, e) => {
                let i1: Type<'c> = IntegerType::new(self.ctx, 1).into();
                // arith.cmpf: oeq=1 ogt=2 oge=3 olt=4 ole=5 une=13; arith.cmpi: eq=0 ne=1
                // slt=2 sle=3 sgt=4 sge=5 ult=6 ule=7 ugt=8 uge=9.
                let (name, code) = match (e, pred) {
                    (F32, "eq") => ("arith.cmpf", 1),
                    (F32, "ne") => ("arith.cmpf", 13),
                    (F32, "lt") => ("arith.cmpf", 4),
                    (F32, "le") => ("arith.cmpf", 5),
                    (F32, "gt") => ("arith.cmpf", 2),
                    (F32, "ge") => ("arith.cmpf", 3),
                    (I64, "eq") | (I1, "eq") => ("arith.cmpi", 0),
                    (I64, "ne") | (I1, "ne") => ("arith.cmpi", 1),
                    (I64, "lt") => ("arith.cmpi", 2),
                    (I64, "le") => ("arith.cmpi", 3),
                    (I64, "gt") => ("arith.cmpi", 4),
                    (I64, "ge") => ("arith.cmpi", 5),
                    (I1, "lt") => ("arith.cmpi", 6),
                    (I1, "le") => ("arith.cmpi", 7),
                    (I1, "gt") => ("arith.cmpi", 8),
                    (I1, "ge") => ("arith.cmpi", 9),
                    _ => return Err(format!("comparison '{pred}' on {} is not supported", elem_name(e))),
                };
                self.op1(b, name, &[x, arg(1)?], i1, &[("predicate", self.i64_attr(code))], vec![])
            }
            Body::Select => {
                let (a, c) = (arg(1)?, arg(2)?);
                self.op1(b, "arith.select", &[x, a, c], a.r#type(), &[], vec![])
            }
            Body::Fused(expr, elems) => {
                let f32t = self.elem(F32)?;
                let as_f32 = |v: Value<'c, 'a>, e: ElemType| self.scalar(b, Body::Convert(e, F32), &[v]);
                let inputs = elems.iter().enumerate().map(|(i, &e)| as_f32(arg(i)?, e)).collect::<Result<Vec<_>, String>>()?;
                let mut vals: Vec<Value<'c, 'a>> = Vec::new();
                for step in &expr.steps {
                    let mut xs = Vec::new();
                    for a in &step.args {
                        xs.push(match *a {
                            FusedOperand::Input(k) => *inputs.get(k).ok_or("fused: input out of range")?,
                            FusedOperand::Step(j) => *vals.get(j).ok_or("fused: step out of range")?,
                            FusedOperand::Const(c) => self.scalar_const(b, F32, c)?,
                        });
                    }
                    let v = match step.f {
                        "select" => {
                            let zero = self.scalar_const(b, F32, 0.0)?;
                            let c = self.op1(b, "arith.cmpf", &[xs[0], zero], IntegerType::new(self.ctx, 1).into(), &[("predicate", self.i64_attr(13))], vec![])?;
                            self.op1(b, "arith.select", &[c, xs[1], xs[2]], f32t, &[], vec![])?
                        }
                        f if COMPARE.contains(&f) => {
                            let c = self.scalar(b, Body::Cmp(f, F32), &xs)?;
                            as_f32(c, I1)?
                        }
                        f if xs.len() == 1 => self.scalar(b, Body::Unary(f, F32), &xs)?,
                        f => self.scalar(b, Body::Binary(f, F32), &xs)?,
                    };
                    vals.push(v);
                }
                vals.last().copied().ok_or_else(|| "fused: no steps".to_string())
            }
            Body::Convert(from, to) => {
                let t = self.elem(to)?;
                match (from, to) {
                    (a, b_) if a == b_ => Ok(x),
                    (I1, F32) => self.op1(b, "arith.uitofp", &[x], t, &[], vec![]),
                    (I64, F32) => self.op1(b, "arith.sitofp", &[x], t, &[], vec![]),
                    (F32, I64) => self.op1(b, "arith.fptosi", &[x], t, &[], vec![]),
                    (I1, I64) => self.op1(b, "arith.extui", &[x], t, &[], vec![]),
                    (F32, I1) => {
                        let zero = self.scalar_const(b, F32, 0.0)?;
                        self.op1(b, "arith.cmpf", &[x, zero], t, &[("predicate", self.i64_attr(13))], vec![])
                    }
                    (I64, I1) => {
                        let zero = self.scalar_const(b, I64, 0.0)?;
                        self.op1(b, "arith.cmpi", &[x, zero], t, &[("predicate", self.i64_attr(1))], vec![])
                    }
                    _ => Err(format!("conversion from {} to {} is not supported", elem_name(from), elem_name(to))),
                }
            }
        }
    }

    /// A one-block region with arguments of `arg_elems` computing `body` and yielding it.
    fn region(&self, arg_elems: &[ElemType], body: Body<'_>) -> Result<Region<'c>, String> {
        let args = arg_elems.iter().map(|&e| Ok((self.elem(e)?, self.loc))).collect::<Result<Vec<_>, String>>()?;
        let block = Block::new(&args);
        {
            let values = (0..args.len())
                .map(|i| block.argument(i).map(Into::into).map_err(|e| format!("internal error: {e}")))
                .collect::<Result<Vec<Value<'c, '_>>, String>>()?;
            let r = self.scalar(&block, body, &values)?;
            block.append_operation(self.build("linalg.yield", &[r], &[], &[], vec![])?);
        }
        let region = Region::new();
        region.append_block(block);
        Ok(region)
    }

    fn empty<'a>(&self, block: &'a Block<'c>, t: &TensorType) -> Result<Value<'c, 'a>, String> {
        self.op1(block, "tensor.empty", &[], self.tensor(t)?, &[], vec![])
    }

    /// `tensor.reshape` of `x` to `rt`'s shape.
    fn reshape<'a>(&self, block: &'a Block<'c>, x: Value<'c, 'a>, rt: &TensorType) -> Result<Value<'c, 'a>, String> {
        let i64t: Type<'c> = IntegerType::new(self.ctx, 64).into();
        let shape_t: Type<'c> = RankedTensorType::new(&[rt.rank() as u64], i64t, None).into();
        let shape: Vec<i64> = rt.shape.iter().map(|&d| d as i64).collect();
        let dense = DenseElementsAttribute::i64_values(shape_t, &shape);
        let shape_v = self.op1(block, "arith.constant", &[], shape_t, &[("value", dense.into())], vec![])?;
        self.op1(block, "tensor.reshape", &[x, shape_v], self.tensor(rt)?, &[], vec![])
    }

    /// `linalg.matmul` (rank 2) or `linalg.batch_matmul` (rank 3) of `a` and `b` into zeros
    /// of `rt`.
    #[allow(clippy::too_many_arguments)]
    fn contract<'a>(&self, block: &'a Block<'c>, name: &str, rank: usize, a: Value<'c, 'a>, b: Value<'c, 'a>, ta: &TensorType, tb: &TensorType, rt: &TensorType) -> Result<Value<'c, 'a>, String> {
        let maps = if rank == 2 {
            [self.dims_map(3, &[0, 2]), self.dims_map(3, &[2, 1]), self.dims_map(3, &[0, 1])]
        } else {
            [self.dims_map(4, &[0, 1, 3]), self.dims_map(4, &[0, 3, 2]), self.dims_map(4, &[0, 1, 2])]
        };
        let acc = self.zeros(block, rt)?;
        let region = self.region(&[ta.elem, tb.elem, rt.elem], Body::MulAdd(rt.elem))?;
        let attrs = [("indexing_maps", self.maps_attr(&maps)?), ("operandSegmentSizes", self.segments(2, 1))];
        self.op1(block, name, &[a, b, acc], self.tensor(rt)?, &attrs, vec![region])
    }

    /// `tensor.empty` filled with zero.
    fn zeros<'a>(&self, block: &'a Block<'c>, t: &TensorType) -> Result<Value<'c, 'a>, String> {
        self.splat(block, t, 0.0)
    }

    fn splat<'a>(&self, block: &'a Block<'c>, t: &TensorType, value: f64) -> Result<Value<'c, 'a>, String> {
        let empty = self.empty(block, t)?;
        let zero = self.scalar_const(block, t.elem, value)?;
        let region = self.region(&[t.elem, t.elem], Body::Pass)?;
        let segments = self.segments(1, 1);
        self.op1(block, "linalg.fill", &[zero, empty], self.tensor(t)?, &[("operandSegmentSizes", segments)], vec![region])
    }

    /// An elementwise `linalg.generic` over `out`'s shape with broadcast inputs.
    fn generic<'a>(
        &self,
        block: &'a Block<'c>,
        ins: &[(Value<'c, 'a>, &TensorType)],
        out: &TensorType,
        body: Body<'_>,
    ) -> Result<Value<'c, 'a>, String> {
        let mut maps: Vec<AffineMap<'c>> = ins.iter().map(|(_, t)| self.broadcast_map(&t.shape, &out.shape)).collect();
        maps.push(AffineMap::multi_dim_identity(self.ctx, out.rank()));
        let mut elems: Vec<ElemType> = ins.iter().map(|(_, t)| t.elem).collect();
        elems.push(out.elem);
        let region = self.region(&elems, body)?;
        let init = self.empty(block, out)?;
        let mut operands: Vec<Value<'c, 'a>> = ins.iter().map(|(v, _)| *v).collect();
        operands.push(init);
        let iterators = ArrayAttribute::new(self.ctx, &vec![self.parallel; out.rank()]).into();
        let attrs = [
            ("indexing_maps", self.maps_attr(&maps)?),
            ("iterator_types", iterators),
            ("operandSegmentSizes", self.segments(ins.len(), 1)),
        ];
        self.op1(block, "linalg.generic", &operands, self.tensor(out)?, &attrs, vec![region])
    }

    // ----- functions and ops -----

    fn func(&self, f: &Func) -> Result<Operation<'c>, String> {
        let arg_types = f
            .arg_types()
            .iter()
            .enumerate()
            .map(|(i, t)| self.ty(t).map_err(|e| format!("argument #{i} of @{}: {e}", f.name)))
            .collect::<Result<Vec<_>, _>>()?;
        let result_types = f
            .result_types
            .iter()
            .enumerate()
            .map(|(i, t)| self.ty(t).map_err(|e| format!("result #{i} of @{}: {e}", f.name)))
            .collect::<Result<Vec<_>, _>>()?;
        let block = Block::new(&arg_types.iter().map(|t| (*t, self.loc)).collect::<Vec<_>>());
        self.body(f, &block)?;
        let region = Region::new();
        region.append_block(block);
        let fty: Type<'c> = FunctionType::new(self.ctx, &arg_types, &result_types).into();
        self.build(
            "func.func",
            &[],
            &[],
            &[("function_type", TypeAttribute::new(fty).into()), ("sym_name", StringAttribute::new(self.ctx, &f.name).into())],
            vec![region],
        )
    }

    fn body<'a>(&self, f: &Func, block: &'a Block<'c>) -> Result<(), String> {
        let mut vals: Vec<Option<Value<'c, 'a>>> = vec![None; f.value_types.len()];
        for (i, slot) in vals.iter_mut().enumerate().take(f.num_args) {
            *slot = Some(block.argument(i).map_err(|e| format!("internal error: {e}"))?.into());
        }
        for (i, op) in f.ops.iter().enumerate() {
            let operands = op
                .operands
                .iter()
                .map(|v| vals.get(v.index()).copied().flatten().ok_or(format!("%{} is used before it is defined", v.0)))
                .collect::<Result<Vec<_>, _>>()
                .and_then(|operands| self.op(f, op, block, &operands))
                .map_err(|e| format!("'{}' (op #{i} of @{}): {e}", op.name, f.name))?;
            vals[op.result(0).index()] = Some(operands);
        }
        let returns = f
            .returns
            .iter()
            .map(|v| vals.get(v.index()).copied().flatten().ok_or(format!("@{}: returned %{} is undefined", f.name, v.0)))
            .collect::<Result<Vec<_>, _>>()?;
        block.append_operation(self.build("func.return", &returns, &[], &[], vec![])?);
        Ok(())
    }

    /// Emit one `dojo.*` op (already verified by the dojo verifier); returns its result.
    fn op<'a>(&self, f: &Func, op: &Op, block: &'a Block<'c>, xs: &[Value<'c, 'a>]) -> Result<Value<'c, 'a>, String> {
        let tensor_of = |v: dojo_compiler::Value| f.tensor(v).ok_or_else(|| format!("%{} is not a tensor", v.0));
        let ins: Vec<&TensorType> = op.operands.iter().map(|v| tensor_of(*v)).collect::<Result<_, _>>()?;
        if op.num_results != 1 {
            return Err(format!("expected one result, found {}", op.num_results));
        }
        let rt = tensor_of(op.result(0))?;
        // Every element type involved must be one we support, whatever the op.
        for t in ins.iter().copied().chain([rt]) {
            self.elem(t.elem)?;
        }
        let with_types = |k: usize| -> Vec<(Value<'c, 'a>, &TensorType)> { xs[..k].iter().copied().zip(ins.iter().copied()).collect() };
        let kind = op.name.strip_prefix("dojo.").unwrap_or(&op.name);
        match kind {
            "matmul" => {
                let (a, b) = (ins[0], ins[1]);
                let product = if a.rank() > 3 && b.rank() == 2 {
                    // `[d..., k] @ [k, n]`: the rows d... as one dim, a 2-d matmul, the rows
                    // split again.
                    let r = a.rank();
                    let rows: usize = a.shape[..r - 1].iter().product();
                    let a2 = TensorType::new(vec![rows, a.shape[r - 1]], a.elem);
                    let x = self.reshape(block, xs[0], &a2)?;
                    let p2 = TensorType::new(vec![rows, b.shape[1]], rt.elem);
                    let product = self.contract(block, "linalg.matmul", 2, x, xs[1], &a2, b, &p2)?;
                    self.reshape(block, product, rt)?
                } else {
                    let name = match rt.rank() {
                        2 => "linalg.matmul",
                        3 => "linalg.batch_matmul",
                        r => return Err(format!("rank {r} matmul is not supported")),
                    };
                    self.contract(block, name, rt.rank(), xs[0], xs[1], a, b, rt)?
                };
                // An epilogue: the fused body over the product (x0) and the extra operands.
                let Some(body) = op.attr("epilogue").and_then(Attr::as_str) else { return Ok(product) };
                let expr = FusedExpr::parse(body)?;
                let operands: Vec<(Value<'c, 'a>, &TensorType)> =
                    std::iter::once((product, rt)).chain(xs[2..].iter().copied().zip(ins[2..].iter().copied())).collect();
                let elems: Vec<ElemType> = operands.iter().map(|(_, t)| t.elem).collect();
                self.generic(block, &operands, rt, Body::Fused(&expr, &elems))
            }
            "constant" => {
                let v = op.attr("value").and_then(Attr::as_float).ok_or("needs a numeric 'value'")?;
                let t = self.tensor(rt)?;
                let dense = match rt.elem {
                    ElemType::F32 => DenseElementsAttribute::f32_splat(t, v as f32),
                    ElemType::I1 => DenseElementsAttribute::bool_splat(t, v != 0.0),
                    ElemType::I64 => {
                        if v.fract() != 0.0 || !(i64::MIN as f64..=i64::MAX as f64).contains(&v) {
                            return Err(format!("value {v} is not an i64"));
                        }
                        DenseElementsAttribute::i64_splat(t, v as i64)
                    }
                    other => return Err(format!("element type {} is not supported", elem_name(other))),
                };
                self.op1(block, "arith.constant", &[], t, &[("value", dense.into())], vec![])
            }
            "cmp" => {
                let pred = op.attr("predicate").and_then(Attr::as_str).ok_or("needs a 'predicate'")?;
                if !COMPARE.contains(&pred) {
                    return Err(format!("unknown predicate '{pred}'"));
                }
                self.generic(block, &with_types(2), rt, Body::Cmp(pred, ins[0].elem))
            }
            "select" => self.generic(block, &with_types(3), rt, Body::Select),
            "fused" => {
                let expr = FusedExpr::parse(op.attr("expr").and_then(Attr::as_str).ok_or("needs an 'expr'")?)?;
                let elems: Vec<ElemType> = ins.iter().map(|t| t.elem).collect();
                self.generic(block, &with_types(ins.len()), rt, Body::Fused(&expr, &elems))
            }
            // Where the value lives is the mesh's business; here it is the value.
            "on_chip" => Ok(xs[0]),
            "convert" => {
                if ins[0].elem == rt.elem {
                    return Ok(xs[0]);
                }
                self.generic(block, &with_types(1), rt, Body::Convert(ins[0].elem, rt.elem))
            }
            "reduce_sum" | "reduce_max" => {
                let is_max = kind == "reduce_max";
                let a = ins[0];
                let dims = check_dims(op.attr("dims").and_then(Attr::as_ints).ok_or("needs 'dims'")?, a.rank())?;
                if dims.is_empty() {
                    return Ok(xs[0]);
                }
                let kept: Vec<usize> = (0..a.rank()).filter(|d| !dims.contains(d)).collect();
                let reduced = TensorType::new(kept.iter().map(|&d| a.shape[d]).collect::<Vec<_>>(), rt.elem);
                let acc = if is_max { self.splat(block, &reduced, f64::NEG_INFINITY)? } else { self.zeros(block, &reduced)? };
                let region = self.region(&[a.elem, rt.elem], if is_max { Body::Max(rt.elem) } else { Body::Add(rt.elem) })?;
                let dims_i64: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
                let sum = self.op1(
                    block,
                    "linalg.reduce",
                    &[xs[0], acc],
                    self.tensor(&reduced)?,
                    &[("dimensions", self.i64_array(&dims_i64))],
                    vec![region],
                )?;
                if rt.shape == reduced.shape {
                    return Ok(sum);
                }
                // keepdim: expand back, each reduced (unit) dim joining a neighbouring kept dim.
                self.expand_shape(block, sum, &reduced, rt, &dims)
            }
            "transpose" => {
                let perm = check_perm(op.attr("perm").and_then(Attr::as_ints).ok_or("needs 'perm'")?, ins[0].rank())?;
                if perm.iter().enumerate().all(|(i, &p)| i == p) {
                    return Ok(xs[0]);
                }
                let init = self.empty(block, rt)?;
                let region = self.region(&[ins[0].elem, rt.elem], Body::Pass)?;
                let perm: Vec<i64> = perm.iter().map(|&p| p as i64).collect();
                self.op1(block, "linalg.transpose", &[xs[0], init], self.tensor(rt)?, &[("permutation", self.i64_array(&perm))], vec![region])
            }
            "reshape" => {
                if ins[0].shape == rt.shape {
                    return Ok(xs[0]);
                }
                self.reshape(block, xs[0], rt)
            }
            "broadcast" => {
                let a = ins[0];
                if a.shape == rt.shape {
                    return Ok(xs[0]);
                }
                let off = rt.rank() - a.rank();
                if a.shape[..] == rt.shape[off..] {
                    // Only new leading dims: linalg.broadcast.
                    let init = self.empty(block, rt)?;
                    let region = self.region(&[a.elem, rt.elem], Body::Pass)?;
                    let added: Vec<i64> = (0..off as i64).collect();
                    return self.op1(block, "linalg.broadcast", &[xs[0], init], self.tensor(rt)?, &[("dimensions", self.i64_array(&added))], vec![region]);
                }
                self.generic(block, &with_types(1), rt, Body::Pass)
            }
            k if dojo_compiler::dialect::UNARY.contains(&k) => {
                self.generic(block, &with_types(1), rt, Body::Unary(k, ins[0].elem))
            }
            k if dojo_compiler::dialect::BINARY.contains(&k) => {
                let want = broadcast_shapes(&[&ins[0].shape, &ins[1].shape])?;
                if want != rt.shape {
                    return Err(format!("result shape {:?} is not the broadcast shape {want:?}", rt.shape));
                }
                self.generic(block, &with_types(2), rt, Body::Binary(k, ins[0].elem))
            }
            "slice" => {
                let ints = |n: &str| op.attr(n).and_then(Attr::as_ints).map(<[i64]>::to_vec).ok_or(format!("needs '{n}'"));
                let sizes: Vec<i64> = rt.shape.iter().map(|&d| d as i64).collect();
                let attrs = [
                    ("static_offsets", self.i64_array(&ints("offsets")?)),
                    ("static_sizes", self.i64_array(&sizes)),
                    ("static_strides", self.i64_array(&ints("strides")?)),
                    ("operandSegmentSizes", DenseI32ArrayAttribute::new(self.ctx, &[1, 0, 0, 0]).into()),
                ];
                self.op1(block, "tensor.extract_slice", &[xs[0]], self.tensor(rt)?, &attrs, vec![])
            }
            "pad" => {
                // A tensor of the fill value with the operand inserted at `low`, every
                // `interior + 1` elements (tensor.pad has no interior padding).
                let ints = |n: &str| op.attr(n).and_then(Attr::as_ints).map(<[i64]>::to_vec).ok_or(format!("needs '{n}'"));
                let value = op.attr("value").and_then(Attr::as_float).ok_or("needs 'value'")?;
                let dest = self.splat(block, rt, value)?;
                let strides: Vec<i64> = ints("interior")?.iter().map(|&i| i + 1).collect();
                self.insert_slice(block, xs[0], dest, &ints("low")?, &ins[0].shape, &strides, rt)
            }
            "concat" => {
                let dim = op.attr("dim").and_then(Attr::as_int).ok_or("needs 'dim'")? as usize;
                let mut dest = self.empty(block, rt)?;
                let mut at = 0i64;
                for (x, t) in xs.iter().zip(ins) {
                    let mut offsets = vec![0i64; rt.rank()];
                    offsets[dim] = at;
                    dest = self.insert_slice(block, *x, dest, &offsets, &t.shape, &vec![1; rt.rank()], rt)?;
                    at += t.shape[dim] as i64;
                }
                Ok(dest)
            }
            other => Err(format!("no MLIR translation for 'dojo.{other}'")),
        }
    }

    /// `tensor.insert_slice` of `src` (shape `sizes`) into `dest` (type `rt`) at `offsets`
    /// with `strides`.
    #[allow(clippy::too_many_arguments)]
    fn insert_slice<'a>(
        &self,
        block: &'a Block<'c>,
        src: Value<'c, 'a>,
        dest: Value<'c, 'a>,
        offsets: &[i64],
        sizes: &[usize],
        strides: &[i64],
        rt: &TensorType,
    ) -> Result<Value<'c, 'a>, String> {
        let sizes: Vec<i64> = sizes.iter().map(|&d| d as i64).collect();
        let attrs = [
            ("static_offsets", self.i64_array(offsets)),
            ("static_sizes", self.i64_array(&sizes)),
            ("static_strides", self.i64_array(strides)),
            ("operandSegmentSizes", DenseI32ArrayAttribute::new(self.ctx, &[1, 1, 0, 0, 0]).into()),
        ];
        self.op1(block, "tensor.insert_slice", &[src, dest], self.tensor(rt)?, &attrs, vec![])
    }

    /// `tensor.expand_shape` of `v` (shape `from`, the result without its reduced dims) to `to`
    /// (keepdim result: unit dims at `dims`).
    fn expand_shape<'a>(
        &self,
        block: &'a Block<'c>,
        v: Value<'c, 'a>,
        from: &TensorType,
        to: &TensorType,
        dims: &[usize],
    ) -> Result<Value<'c, 'a>, String> {
        // One group per source dim; a unit dim joins the group of the kept dim before it (or,
        // before the first kept dim, the first group). A rank-0 source has no groups.
        let mut groups: Vec<Vec<i64>> = Vec::new();
        let mut pending: Vec<i64> = Vec::new();
        for d in 0..to.rank() {
            if dims.contains(&d) {
                match groups.last_mut() {
                    Some(g) => g.push(d as i64),
                    None => pending.push(d as i64),
                }
            } else {
                let mut g = std::mem::take(&mut pending);
                g.push(d as i64);
                groups.push(g);
            }
        }
        if groups.len() != from.rank() {
            return Err("internal error: keepdim regrouping".into());
        }
        let i64t: Type<'c> = IntegerType::new(self.ctx, 64).into();
        let reassociation: Vec<Attribute<'c>> = groups
            .iter()
            .map(|g| {
                let items: Vec<Attribute<'c>> = g.iter().map(|&d| IntegerAttribute::new(i64t, d).into()).collect();
                ArrayAttribute::new(self.ctx, &items).into()
            })
            .collect();
        let static_shape: Vec<i64> = to.shape.iter().map(|&d| d as i64).collect();
        self.op1(
            block,
            "tensor.expand_shape",
            &[v],
            self.tensor(to)?,
            &[
                ("reassociation", ArrayAttribute::new(self.ctx, &reassociation).into()),
                ("static_output_shape", self.i64_array(&static_shape)),
            ],
            vec![],
        )
    }
}
