//! Parser for the text form (MLIR generic syntax, the subset `print` writes plus MLIR's own
//! variants of it). It never panics: malformed text gives a [`Diagnostic`] with the line and
//! column where reading stopped. Op locations come back in a [`SourceMap`] so that later
//! errors (verifier, passes) can point into the file too.

use crate::ir::{Attr, CFloatFormat, ElemType, Func, Module, Op, TensorType, Type, Value};
use std::collections::HashMap;
use std::fmt;

/// An error at a place in the text (1-based line and column).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: error: {}", self.line, self.col, self.message)
    }
}

impl std::error::Error for Diagnostic {}

/// Where each parsed op started: `ops[func][op] = (line, col)`; `funcs[func]` likewise.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SourceMap {
    pub funcs: Vec<(usize, usize)>,
    pub ops: Vec<Vec<(usize, usize)>>,
}

impl SourceMap {
    pub fn op(&self, func: usize, op: usize) -> Option<(usize, usize)> {
        self.ops.get(func).and_then(|f| f.get(op)).copied()
    }
}

/// Parse a module. See [`parse_module_with_locations`] for op locations.
pub fn parse_module(text: &str) -> Result<Module, Diagnostic> {
    parse_module_with_locations(text).map(|(m, _)| m)
}

/// Parse a module and report where each function and op started.
pub fn parse_module_with_locations(text: &str) -> Result<(Module, SourceMap), Diagnostic> {
    let mut p = Parser { src: text.as_bytes(), pos: 0, line: 1, col: 1 };
    let mut map = SourceMap::default();
    let module = p.module(&mut map)?;
    p.skip_ws();
    if !p.at_end() {
        return Err(p.error("expected end of input after the module"));
    }
    Ok((module, map))
}

/// Parse a type on its own, e.g. `tensor<2x3xf32>`.
pub fn parse_type(text: &str) -> Result<Type, Diagnostic> {
    let mut p = Parser { src: text.as_bytes(), pos: 0, line: 1, col: 1 };
    let t = p.ty()?;
    p.skip_ws();
    if !p.at_end() {
        return Err(p.error("unexpected text after the type"));
    }
    Ok(t)
}

type PResult<T> = Result<T, Diagnostic>;

struct Parser<'a> {
    src: &'a [u8],
    pos: usize,
    line: usize,
    col: usize,
}

/// Names of the values visible in the function being parsed.
struct Scope {
    values: HashMap<String, Value>,
    /// For a multi-result definition `%x:2`, the base name maps to its first value and count.
    multi: HashMap<String, (Value, usize)>,
}

impl<'a> Parser<'a> {
    // ---- characters -------------------------------------------------------------------

    fn at_end(&self) -> bool {
        self.pos >= self.src.len()
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn peek_at(&self, k: usize) -> Option<u8> {
        self.src.get(self.pos + k).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.pos += 1;
        if c == b'\n' {
            self.line += 1;
            self.col = 1;
        } else if (c & 0xC0) != 0x80 {
            // Count characters, not UTF-8 continuation bytes.
            self.col += 1;
        }
        Some(c)
    }

    fn skip_ws(&mut self) {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\n' | b'\r') => {
                    self.bump();
                }
                Some(b'/') if self.peek_at(1) == Some(b'/') => {
                    while let Some(c) = self.peek() {
                        if c == b'\n' {
                            break;
                        }
                        self.bump();
                    }
                }
                _ => return,
            }
        }
    }

    fn error(&self, msg: impl Into<String>) -> Diagnostic {
        Diagnostic { line: self.line, col: self.col, message: msg.into() }
    }

    fn here(&self) -> (usize, usize) {
        (self.line, self.col)
    }

    fn describe_next(&self) -> String {
        match self.peek() {
            None => "end of input".to_string(),
            Some(_) => {
                let rest = &self.src[self.pos..];
                let end = rest
                    .iter()
                    .position(|c| c.is_ascii_whitespace())
                    .unwrap_or(rest.len())
                    .min(20);
                format!("'{}'", String::from_utf8_lossy(&rest[..end.max(1)]))
            }
        }
    }

    /// Consume `tok` (after whitespace) if it is next.
    fn eat(&mut self, tok: &str) -> bool {
        self.skip_ws();
        if self.src[self.pos..].starts_with(tok.as_bytes()) {
            for _ in 0..tok.len() {
                self.bump();
            }
            true
        } else {
            false
        }
    }

    fn expect(&mut self, tok: &str) -> PResult<()> {
        if self.eat(tok) {
            Ok(())
        } else {
            Err(self.error(format!("expected '{tok}', found {}", self.describe_next())))
        }
    }

    fn bare_id(&mut self) -> PResult<String> {
        self.skip_ws();
        let start = self.pos;
        match self.peek() {
            Some(c) if c.is_ascii_alphabetic() || c == b'_' => {}
            _ => return Err(self.error(format!("expected an identifier, found {}", self.describe_next()))),
        }
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'$' {
                self.bump();
            } else {
                break;
            }
        }
        Ok(String::from_utf8_lossy(&self.src[start..self.pos]).into_owned())
    }

    fn string_lit(&mut self) -> PResult<String> {
        self.skip_ws();
        if self.peek() != Some(b'"') {
            return Err(self.error(format!("expected a string, found {}", self.describe_next())));
        }
        self.bump();
        let mut bytes = Vec::new();
        loop {
            match self.bump() {
                None | Some(b'\n') => return Err(self.error("unterminated string")),
                Some(b'"') => break,
                Some(b'\\') => match self.bump() {
                    Some(b'"') => bytes.push(b'"'),
                    Some(b'\\') => bytes.push(b'\\'),
                    Some(b'n') => bytes.push(b'\n'),
                    Some(b't') => bytes.push(b'\t'),
                    Some(h1) if h1.is_ascii_hexdigit() => {
                        let h2 = self.bump().filter(u8::is_ascii_hexdigit);
                        let Some(h2) = h2 else {
                            return Err(self.error("bad escape in string: expected two hex digits"));
                        };
                        let hex = [h1, h2];
                        let s = std::str::from_utf8(&hex).unwrap_or("00");
                        bytes.push(u8::from_str_radix(s, 16).unwrap_or(0));
                    }
                    _ => return Err(self.error("bad escape in string")),
                },
                Some(c) => bytes.push(c),
            }
        }
        String::from_utf8(bytes).map_err(|_| self.error("string is not valid UTF-8"))
    }

    fn integer(&mut self) -> PResult<i64> {
        self.skip_ws();
        let start = self.pos;
        let (line, col) = self.here();
        if self.peek() == Some(b'-') {
            self.bump();
        }
        let digits_start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.bump();
        }
        if self.pos == digits_start {
            return Err(Diagnostic {
                line,
                col,
                message: format!("expected an integer, found {}", self.describe_at(start)),
            });
        }
        let text = String::from_utf8_lossy(&self.src[start..self.pos]).into_owned();
        text.parse::<i64>().map_err(|_| Diagnostic {
            line,
            col,
            message: format!("integer '{text}' does not fit in 64 bits"),
        })
    }

    fn describe_at(&self, pos: usize) -> String {
        match self.src.get(pos) {
            None => "end of input".into(),
            Some(c) => format!("'{}'", *c as char),
        }
    }

    fn usize_lit(&mut self, what: &str) -> PResult<usize> {
        let (line, col) = {
            self.skip_ws();
            self.here()
        };
        let v = self.integer()?;
        usize::try_from(v)
            .map_err(|_| Diagnostic { line, col, message: format!("{what} must not be negative, got {v}") })
    }

    // ---- types -----------------------------------------------------------------------

    fn ty(&mut self) -> PResult<Type> {
        self.skip_ws();
        let (line, col) = self.here();
        match self.peek() {
            Some(b'(') => {
                let ins = self.type_list()?;
                self.expect("->")?;
                let outs = self.result_types()?;
                Ok(Type::Function(ins, outs))
            }
            Some(b'!') => Ok(Type::Elem(self.elem_type()?)),
            _ => {
                let id = self.bare_id()?;
                if id == "tensor" {
                    self.expect("<")?;
                    return self.tensor_body().map(Type::Tensor);
                }
                ElemType::from_keyword(&id).map(Type::Elem).ok_or(Diagnostic {
                    line,
                    col,
                    message: format!(
                        "unknown type '{id}': expected tensor<...>, a function type, f32, f64, f16, bf16, i1, i8, i16, i32, i64 or !dojo.<cfloat format><bias>"
                    ),
                })
            }
        }
    }

    /// After `tensor<`: `2x3xf32>` or `f32>`.
    fn tensor_body(&mut self) -> PResult<TensorType> {
        let mut shape = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                Some(c) if c.is_ascii_digit() => {
                    let d = self.usize_lit("a dimension")?;
                    shape.push(d);
                    if !self.eat("x") {
                        return Err(self.error("expected 'x' after a tensor dimension"));
                    }
                }
                Some(b'?') => {
                    return Err(self.error(
                        "dynamic dimensions ('?') are not supported: torch-dojo compiles static shapes",
                    ))
                }
                _ => break,
            }
        }
        let elem = self.elem_type()?;
        self.expect(">")?;
        Ok(TensorType { shape, elem })
    }

    fn elem_type(&mut self) -> PResult<ElemType> {
        self.skip_ws();
        let (line, col) = self.here();
        if self.eat("!") {
            let id = self.bare_id()?;
            let Some(name) = id.strip_prefix("dojo.") else {
                return Err(Diagnostic { line, col, message: format!("unknown dialect type '!{id}'") });
            };
            let Some(format) = CFloatFormat::ALL.iter().copied().find(|f| f.name() == name) else {
                return Err(Diagnostic {
                    line,
                    col,
                    message: format!(
                        "unknown CFloat format '{name}': expected cf8_143, cf8_152, cf16_shp or cf16_uhp"
                    ),
                });
            };
            self.expect("<")?;
            let (bl, bc) = {
                self.skip_ws();
                self.here()
            };
            let bias = self.integer()?;
            if !(0..=63).contains(&bias) {
                return Err(Diagnostic {
                    line: bl,
                    col: bc,
                    message: format!("CFloat bias must be in 0..=63, got {bias}"),
                });
            }
            self.expect(">")?;
            return Ok(ElemType::CFloat(format, bias as u8));
        }
        let id = self.bare_id()?;
        ElemType::from_keyword(&id).ok_or(Diagnostic {
            line,
            col,
            message: format!("unknown element type '{id}'"),
        })
    }

    fn type_list(&mut self) -> PResult<Vec<Type>> {
        self.expect("(")?;
        let mut out = Vec::new();
        if self.eat(")") {
            return Ok(out);
        }
        loop {
            out.push(self.ty()?);
            if self.eat(")") {
                return Ok(out);
            }
            self.expect(",")?;
        }
    }

    /// After `->`: one type or a parenthesised list.
    fn result_types(&mut self) -> PResult<Vec<Type>> {
        self.skip_ws();
        if self.peek() == Some(b'(') {
            // `(a, b)` is a list, but `(a) -> b` would be a function type: MLIR reads a
            // parenthesised list here, and so do we.
            self.type_list()
        } else {
            Ok(vec![self.ty()?])
        }
    }

    // ---- attributes -------------------------------------------------------------------

    fn attr_dict_body(&mut self, close: &str) -> PResult<Vec<(String, Attr)>> {
        let mut out: Vec<(String, Attr)> = Vec::new();
        if self.eat(close) {
            return Ok(out);
        }
        loop {
            self.skip_ws();
            let (line, col) = self.here();
            let name = if self.peek() == Some(b'"') { self.string_lit()? } else { self.bare_id()? };
            if out.iter().any(|(n, _)| *n == name) {
                return Err(Diagnostic { line, col, message: format!("duplicate attribute '{name}'") });
            }
            let value = if self.eat("=") {
                self.attr()?
            } else {
                // A unit attribute; we represent it as `true`.
                Attr::Bool(true)
            };
            out.push((name, value));
            if self.eat(close) {
                out.sort_by(|a, b| a.0.cmp(&b.0));
                return Ok(out);
            }
            self.expect(",")?;
        }
    }

    fn attr(&mut self) -> PResult<Attr> {
        self.skip_ws();
        let (line, col) = self.here();
        match self.peek() {
            Some(b'"') => Ok(Attr::Str(self.string_lit()?)),
            Some(b'[') => {
                self.bump();
                let mut items = Vec::new();
                if self.eat("]") {
                    return Ok(Attr::Array(items));
                }
                loop {
                    items.push(self.attr()?);
                    if self.eat("]") {
                        return Ok(Attr::Array(items));
                    }
                    self.expect(",")?;
                }
            }
            Some(b'{') => {
                self.bump();
                Ok(Attr::Dict(self.attr_dict_body("}")?))
            }
            Some(b'0') if self.peek_at(1) == Some(b'x') => {
                self.bump();
                self.bump();
                let start = self.pos;
                while self.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
                    self.bump();
                }
                let hex = String::from_utf8_lossy(&self.src[start..self.pos]).into_owned();
                let bits = u64::from_str_radix(&hex, 16)
                    .map_err(|_| Diagnostic { line, col, message: format!("bad hex literal '0x{hex}'") })?;
                let ty = self.opt_attr_type()?;
                match ty {
                    Some(Type::Elem(ElemType::F64)) => Ok(Attr::Float(f64::from_bits(bits))),
                    Some(Type::Elem(ElemType::F32)) => {
                        Ok(Attr::Float(f32::from_bits(bits as u32) as f64))
                    }
                    _ => Ok(Attr::Int(bits as i64)),
                }
            }
            Some(c) if c.is_ascii_digit() || c == b'-' => self.number_attr(),
            Some(b'(') | Some(b'!') => Ok(Attr::Type(self.ty()?)),
            _ => {
                let save = (self.pos, self.line, self.col);
                let id = self.bare_id()?;
                match id.as_str() {
                    "true" => Ok(Attr::Bool(true)),
                    "false" => Ok(Attr::Bool(false)),
                    "unit" => Ok(Attr::Bool(true)),
                    "array" => self.dense_array(),
                    _ => {
                        (self.pos, self.line, self.col) = save;
                        self.ty().map(Attr::Type).map_err(|_| Diagnostic {
                            line,
                            col,
                            message: format!("expected an attribute value, found '{id}'"),
                        })
                    }
                }
            }
        }
    }

    fn opt_attr_type(&mut self) -> PResult<Option<Type>> {
        self.skip_ws();
        // A ':' here types the literal; '::' never appears in our syntax.
        if self.peek() == Some(b':') {
            self.bump();
            return Ok(Some(self.ty()?));
        }
        Ok(None)
    }

    fn number_attr(&mut self) -> PResult<Attr> {
        self.skip_ws();
        let (line, col) = self.here();
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.bump();
        }
        let mut is_float = false;
        while let Some(c) = self.peek() {
            if c.is_ascii_digit() {
                self.bump();
            } else if c == b'.' || c == b'e' || c == b'E' {
                is_float = true;
                self.bump();
                if matches!(self.peek(), Some(b'+' | b'-')) && (c == b'e' || c == b'E') {
                    self.bump();
                }
            } else {
                break;
            }
        }
        let text = String::from_utf8_lossy(&self.src[start..self.pos]).into_owned();
        let ty = self.opt_attr_type()?;
        let float_type = matches!(ty, Some(Type::Elem(e)) if e.is_float());
        if is_float || float_type {
            let v: f64 = text
                .parse()
                .map_err(|_| Diagnostic { line, col, message: format!("bad float literal '{text}'") })?;
            Ok(Attr::Float(v))
        } else {
            let v: i64 = text
                .parse()
                .map_err(|_| Diagnostic { line, col, message: format!("bad integer literal '{text}'") })?;
            if ty == Some(Type::Elem(ElemType::I1)) {
                return Ok(Attr::Bool(v != 0));
            }
            Ok(Attr::Int(v))
        }
    }

    /// After `array`: `<i64: 1, 2>` or `<f64: 1.0>` or `<i64>`.
    fn dense_array(&mut self) -> PResult<Attr> {
        self.expect("<")?;
        let (line, col) = {
            self.skip_ws();
            self.here()
        };
        let elem = self.bare_id()?;
        let is_float = match elem.as_str() {
            "i64" | "i32" | "i16" | "i8" | "i1" => false,
            "f64" | "f32" => true,
            other => {
                return Err(Diagnostic {
                    line,
                    col,
                    message: format!("unsupported dense array element type '{other}'"),
                })
            }
        };
        let mut ints = Vec::new();
        let mut floats = Vec::new();
        if !self.eat(">") {
            self.expect(":")?;
            loop {
                if is_float {
                    match self.number_attr()? {
                        Attr::Float(v) => floats.push(v),
                        Attr::Int(v) => floats.push(v as f64),
                        _ => return Err(self.error("expected a number")),
                    }
                } else {
                    ints.push(self.integer()?);
                }
                if self.eat(">") {
                    break;
                }
                self.expect(",")?;
            }
        }
        Ok(if is_float { Attr::Floats(floats) } else { Attr::Ints(ints) })
    }

    // ---- structure --------------------------------------------------------------------

    fn module(&mut self, map: &mut SourceMap) -> PResult<Module> {
        self.skip_ws();
        let mut module = Module::default();
        let wrapped = self.src[self.pos..].starts_with(b"\"builtin.module\"");
        if wrapped {
            self.string_lit()?;
            self.expect("(")?;
            self.expect(")")?;
            if self.eat("<{") {
                module.attrs.extend(self.attr_dict_body("}>")?);
            }
            self.expect("(")?;
            self.expect("{")?;
        }
        loop {
            self.skip_ws();
            if wrapped && self.peek() == Some(b'}') {
                break;
            }
            if !wrapped && self.at_end() {
                break;
            }
            // MLIR allows an optional entry-block label for the module body.
            if self.peek() == Some(b'^') {
                self.block_label()?;
                self.expect(":")?;
                continue;
            }
            let func_index = module.funcs.len();
            map.funcs.push(self.here());
            map.ops.push(Vec::new());
            let f = self.func(&mut map.ops[func_index])?;
            if module.funcs.iter().any(|g| g.name == f.name) {
                let (line, col) = map.funcs[func_index];
                return Err(Diagnostic { line, col, message: format!("duplicate function '{}'", f.name) });
            }
            module.funcs.push(f);
        }
        if wrapped {
            self.expect("}")?;
            self.expect(")")?;
            self.skip_ws();
            if self.peek() == Some(b'{') {
                self.bump();
                module.attrs.extend(self.attr_dict_body("}")?);
            }
            module.attrs.sort_by(|a, b| a.0.cmp(&b.0));
            self.expect(":")?;
            self.expect("(")?;
            self.expect(")")?;
            self.expect("->")?;
            self.expect("(")?;
            self.expect(")")?;
        }
        Ok(module)
    }

    fn block_label(&mut self) -> PResult<String> {
        self.expect("^")?;
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_') {
            self.bump();
        }
        Ok(String::from_utf8_lossy(&self.src[start..self.pos]).into_owned())
    }

    fn func(&mut self, op_locs: &mut Vec<(usize, usize)>) -> PResult<Func> {
        self.skip_ws();
        let (fline, fcol) = self.here();
        let name = self.string_lit()?;
        if name != "func.func" {
            return Err(Diagnostic {
                line: fline,
                col: fcol,
                message: format!("expected a \"func.func\" op at module level, found \"{name}\""),
            });
        }
        self.expect("(")?;
        self.expect(")")?;
        let mut attrs = Vec::new();
        if self.eat("<{") {
            attrs.extend(self.attr_dict_body("}>")?);
        }
        self.expect("(")?;
        self.expect("{")?;

        // Entry block arguments.
        let mut scope = Scope { values: HashMap::new(), multi: HashMap::new() };
        let mut arg_types = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'^') {
            self.block_label()?;
            if self.eat("(") && !self.eat(")") {
                loop {
                    self.skip_ws();
                    let (line, col) = self.here();
                    let vname = self.value_name()?;
                    self.expect(":")?;
                    let t = self.ty()?;
                    let v = Value(arg_types.len() as u32);
                    if scope.values.insert(vname.clone(), v).is_some() {
                        return Err(Diagnostic { line, col, message: format!("redefinition of '{vname}'") });
                    }
                    arg_types.push(t);
                    if self.eat(")") {
                        break;
                    }
                    self.expect(",")?;
                }
            }
            self.expect(":")?;
        }
        let mut func = Func::new(String::new(), arg_types);

        // Body ops until func.return.
        let returns;
        let return_types;
        loop {
            self.skip_ws();
            let loc = self.here();
            if self.src[self.pos..].starts_with(b"\"func.return\"") {
                self.string_lit()?;
                let operands = self.operand_list(&scope)?;
                self.expect(":")?;
                let ins = self.type_list()?;
                self.expect("->")?;
                let outs = self.result_types()?;
                if !outs.is_empty() {
                    return Err(self.error("func.return produces no results: its type must end in '-> ()'"));
                }
                self.check_operand_types(&func, &operands, &ins, loc)?;
                returns = operands.into_iter().map(|(v, _)| v).collect::<Vec<_>>();
                return_types = ins;
                break;
            }
            if self.at_end() || self.peek() == Some(b'}') {
                return Err(self.error("function body must end with a \"func.return\" op"));
            }
            self.op(&mut func, &mut scope)?;
            op_locs.push(loc);
        }
        self.expect("}")?;
        self.expect(")")?;
        self.skip_ws();
        if self.peek() == Some(b'{') {
            self.bump();
            attrs.extend(self.attr_dict_body("}")?);
        }
        self.expect(":")?;
        self.expect("(")?;
        self.expect(")")?;
        self.expect("->")?;
        self.expect("(")?;
        self.expect(")")?;

        // function_type and sym_name are the func's own; everything else is kept.
        let mut fty = None;
        for (k, v) in attrs {
            match (k.as_str(), v) {
                ("sym_name", Attr::Str(s)) => func.name = s,
                ("function_type", Attr::Type(Type::Function(ins, outs))) => fty = Some((ins, outs)),
                ("sym_name", _) | ("function_type", _) => {
                    return Err(Diagnostic {
                        line: fline,
                        col: fcol,
                        message: format!("func.func attribute '{k}' has the wrong kind"),
                    })
                }
                (_, v) => func.attrs.push((k, v)),
            }
        }
        func.attrs.sort_by(|a, b| a.0.cmp(&b.0));
        if func.name.is_empty() {
            return Err(Diagnostic { line: fline, col: fcol, message: "func.func needs a sym_name".into() });
        }
        let Some((ins, outs)) = fty else {
            return Err(Diagnostic {
                line: fline,
                col: fcol,
                message: format!("func.func '{}' needs a function_type", func.name),
            });
        };
        if ins.as_slice() != func.arg_types() {
            return Err(Diagnostic {
                line: fline,
                col: fcol,
                message: format!(
                    "function_type of '{}' lists {} argument type(s) that differ from the entry block's",
                    func.name,
                    ins.len()
                ),
            });
        }
        if outs != return_types {
            return Err(Diagnostic {
                line: fline,
                col: fcol,
                message: format!("function_type of '{}' does not match the types func.return returns", func.name),
            });
        }
        func.returns = returns;
        func.result_types = outs;
        Ok(func)
    }

    fn value_name(&mut self) -> PResult<String> {
        self.skip_ws();
        if self.peek() != Some(b'%') {
            return Err(self.error(format!("expected a value like %0, found {}", self.describe_next())));
        }
        let start = self.pos;
        self.bump();
        let body_start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c == b'.') {
            self.bump();
        }
        if self.pos == body_start {
            return Err(self.error("expected a value name after '%'"));
        }
        Ok(String::from_utf8_lossy(&self.src[start..self.pos]).into_owned())
    }

    /// A use: `%name` or `%name#i`.
    fn value_use(&mut self, scope: &Scope) -> PResult<Value> {
        self.skip_ws();
        let (line, col) = self.here();
        let name = self.value_name()?;
        if self.peek() == Some(b'#') {
            self.bump();
            let idx = self.usize_lit("a result index")?;
            return match scope.multi.get(&name) {
                Some((first, n)) if idx < *n => Ok(Value(first.0 + idx as u32)),
                Some((_, n)) => Err(Diagnostic {
                    line,
                    col,
                    message: format!("{name} has {n} results; #{idx} is out of range"),
                }),
                None => Err(Diagnostic { line, col, message: format!("use of undefined value '{name}#{idx}'") }),
            };
        }
        if let Some((_, n)) = scope.multi.get(&name) {
            return Err(Diagnostic {
                line,
                col,
                message: format!("{name} has {n} results: name one as {name}#0 .. {name}#{}", n - 1),
            });
        }
        scope
            .values
            .get(&name)
            .copied()
            .ok_or(Diagnostic { line, col, message: format!("use of undefined value '{name}'") })
    }

    fn operand_list(&mut self, scope: &Scope) -> PResult<Vec<(Value, (usize, usize))>> {
        self.expect("(")?;
        let mut out = Vec::new();
        if self.eat(")") {
            return Ok(out);
        }
        loop {
            self.skip_ws();
            let loc = self.here();
            out.push((self.value_use(scope)?, loc));
            if self.eat(")") {
                return Ok(out);
            }
            self.expect(",")?;
        }
    }

    fn check_operand_types(
        &self,
        func: &Func,
        operands: &[(Value, (usize, usize))],
        types: &[Type],
        loc: (usize, usize),
    ) -> PResult<()> {
        if operands.len() != types.len() {
            return Err(Diagnostic {
                line: loc.0,
                col: loc.1,
                message: format!(
                    "op has {} operand(s) but its type lists {}",
                    operands.len(),
                    types.len()
                ),
            });
        }
        for ((v, (line, col)), t) in operands.iter().zip(types) {
            let actual = func.ty(*v);
            if actual != t {
                return Err(Diagnostic {
                    line: *line,
                    col: *col,
                    message: format!("operand has type {actual} but the op's type says {t}"),
                });
            }
        }
        Ok(())
    }

    fn op(&mut self, func: &mut Func, scope: &mut Scope) -> PResult<()> {
        self.skip_ws();
        let loc = self.here();
        // Result definitions.
        let mut result_name = None;
        let mut declared = 0usize;
        if self.peek() == Some(b'%') {
            let name = self.value_name()?;
            declared = 1;
            if self.peek() == Some(b':') {
                self.bump();
                declared = self.usize_lit("a result count")?;
                if declared == 0 {
                    return Err(self.error("a result group needs at least one result"));
                }
            }
            if scope.values.contains_key(&name) || scope.multi.contains_key(&name) {
                return Err(Diagnostic { line: loc.0, col: loc.1, message: format!("redefinition of '{name}'") });
            }
            result_name = Some(name);
            self.expect("=")?;
        }
        self.skip_ws();
        let name_loc = self.here();
        if self.peek() != Some(b'"') {
            return Err(self.error(format!(
                "expected an op in generic form like \"dialect.op\"(...), found {}",
                self.describe_next()
            )));
        }
        let name = self.string_lit()?;
        if !name.contains('.') || name.starts_with('.') {
            return Err(Diagnostic {
                line: name_loc.0,
                col: name_loc.1,
                message: format!("op name \"{name}\" needs a dialect prefix, like \"dojo.matmul\""),
            });
        }
        if name == "func.func" || name == "builtin.module" {
            return Err(Diagnostic {
                line: name_loc.0,
                col: name_loc.1,
                message: format!("\"{name}\" cannot be nested inside a function"),
            });
        }
        let operands = self.operand_list(scope)?;
        let mut attrs = Vec::new();
        if self.eat("<{") {
            attrs.extend(self.attr_dict_body("}>")?);
        }
        self.skip_ws();
        if self.peek() == Some(b'(') {
            return Err(self.error(format!(
                "op \"{name}\" has regions; torch-dojo functions are single blocks of straight-line ops"
            )));
        }
        if self.peek() == Some(b'{') {
            self.bump();
            let more = self.attr_dict_body("}")?;
            for (k, v) in more {
                if attrs.iter().any(|(n, _)| *n == k) {
                    return Err(self.error(format!("duplicate attribute '{k}'")));
                }
                attrs.push((k, v));
            }
        }
        attrs.sort_by(|a, b| a.0.cmp(&b.0));
        self.expect(":")?;
        self.skip_ws();
        let tloc = self.here();
        let ty = self.ty()?;
        let Type::Function(ins, outs) = ty else {
            return Err(Diagnostic {
                line: tloc.0,
                col: tloc.1,
                message: "expected the op's function type, like (tensor<4xf32>) -> tensor<4xf32>".into(),
            });
        };
        self.check_operand_types(func, &operands, &ins, loc)?;
        if outs.len() != declared {
            return Err(Diagnostic {
                line: tloc.0,
                col: tloc.1,
                message: format!("op defines {declared} result(s) but its type lists {}", outs.len()),
            });
        }
        let n = outs.len();
        let first = func.push(name, operands.into_iter().map(|(v, _)| v).collect(), attrs, outs);
        if let Some(rn) = result_name {
            if n == 1 {
                scope.values.insert(rn, first);
            } else {
                scope.multi.insert(rn, (first, n));
            }
        }
        Ok(())
    }
}

/// Look up an op by index and give its name and location for messages.
pub fn describe_op(func: &Func, op_index: usize, map: Option<(&SourceMap, usize)>) -> String {
    let name = func.ops.get(op_index).map(|o: &Op| o.name.as_str()).unwrap_or("?");
    match map.and_then(|(m, fi)| m.op(fi, op_index)) {
        Some((l, c)) => format!("{l}:{c}: \"{name}\""),
        None => format!("@{} op #{op_index} \"{name}\"", func.name),
    }
}
