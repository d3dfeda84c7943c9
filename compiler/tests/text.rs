//! The text form through the public API: print → parse is the identity, and malformed text
//! gives a diagnostic with line:column instead of a panic.

use dojo_compiler::*;

fn sample() -> Module {
    let f32t = |s: &[usize]| tensor(s, ElemType::F32);
    let mut f = Func::new("forward", vec![f32t(&[32, 64]), f32t(&[128, 64]), f32t(&[128])]);
    let t = f.push("dojo.transpose", vec![f.arg(1)], vec![attr("perm", Attr::Ints(vec![1, 0]))], vec![f32t(&[64, 128])]);
    let mm = f.push("dojo.matmul", vec![f.arg(0), t], vec![], vec![f32t(&[32, 128])]);
    let add = f.push("dojo.add", vec![mm, f.arg(2)], vec![], vec![f32t(&[32, 128])]);
    let zero = f.push("dojo.constant", vec![], vec![attr("value", Attr::Float(0.0))], vec![f32t(&[])]);
    let cmp = f.push("dojo.cmp", vec![add, zero], vec![attr("predicate", Attr::Str("le".into()))], vec![tensor(&[32, 128], ElemType::I1)]);
    let sel = f.push("dojo.select", vec![cmp, zero, add], vec![], vec![f32t(&[32, 128])]);
    let two = f.push(
        "aten.max.dim",
        vec![sel],
        vec![
            attr("dim", Attr::Int(1)),
            attr("keepdim", Attr::Bool(false)),
            attr("weird name", Attr::Str("q\"uote\\ \n".into())),
            attr("eps", Attr::Float(1e-5)),
            attr("big", Attr::Float(-3.5e300)),
            attr("nan", Attr::Float(f64::NAN)),
            attr("inf", Attr::Float(f64::NEG_INFINITY)),
            attr("list", Attr::Array(vec![Attr::Int(-2), Attr::Float(0.5), Attr::Type(f32t(&[2]))])),
            attr("fl", Attr::Floats(vec![0.1, 2.0])),
            attr("empty", Attr::Ints(vec![])),
            attr("d", Attr::Dict(vec![("x".into(), Attr::Bool(true))])),
        ],
        vec![f32t(&[32]), tensor(&[32], ElemType::I64)],
    );
    let cf = f.push("aten.foo.default", vec![], vec![], vec![tensor(&[4], ElemType::CFloat(CFloatFormat::Cf8_143, 7))]);
    f.set_returns(vec![sel, two, Value(two.0 + 1), cf]);
    Module { funcs: vec![f], attrs: vec![attr("dojo.target", Attr::Str("d1".into()))] }
}

#[test]
fn print_parse_round_trip() {
    let m = sample();
    verify(&m).expect("sample verifies");
    let text = print_module(&m);
    let back = parse_module(&text).unwrap_or_else(|d| panic!("{d}\n{text}"));
    assert_eq!(back, m, "{text}");
    assert_eq!(print_module(&back), text);
}

#[test]
fn parses_mlir_variants() {
    // Attributes in the trailing dict, named values, a single-result type without parens.
    let text = r#"
"func.func"() ({
^bb0(%x: tensor<2xf32>):
  %y = "dojo.relu"(%x) : (tensor<2xf32>) -> tensor<2xf32>
  "func.return"(%y) : (tensor<2xf32>) -> ()
}) {function_type = (tensor<2xf32>) -> tensor<2xf32>, sym_name = "f"} : () -> ()
"#;
    let m = parse_module(text).expect("parses");
    assert_eq!(m.funcs[0].ops[0].name, "dojo.relu");
    verify(&m).expect("verifies");
}

fn diag(text: &str) -> Diagnostic {
    match parse_module(text) {
        Ok(_) => panic!("expected a diagnostic for:\n{text}"),
        Err(d) => d,
    }
}

#[test]
fn malformed_text_gives_line_and_column() {
    let m = print_module(&sample());
    // Every prefix of valid text fails cleanly (no panic) with a position inside the text.
    for cut in (1..m.len()).step_by(7) {
        if !m.is_char_boundary(cut) {
            continue;
        }
        let d = diag(&m[..cut]);
        assert!(d.line >= 1 && d.col >= 1, "{d}");
    }
    let d = diag("\"builtin.module\"() ({\n  \"func.func\"() <{function_type = () -> (), sym_name = \"f\"}> ({\n    \"func.return\"(%7) : () -> ()\n  }) : () -> ()\n}) : () -> ()\n");
    assert_eq!((d.line, d.col), (3, 19), "{d}");
    assert!(d.message.contains("undefined value '%7'"), "{d}");
    let d = diag("\"func.func\"() <{function_type = () -> (), sym_name = \"f\"}> ({\n  %0 = \"dojo.constant\"() {value = 1.0 : f64} : () -> tensor<4x?xf32>\n  \"func.return\"() : () -> ()\n}) : () -> ()");
    assert_eq!(d.line, 2);
    assert!(d.message.contains("dynamic dimensions"), "{d}");
    let d = diag("\"func.func\"() <{function_type = () -> (), sym_name = \"f\"}> ({\n  %0 = \"dojo.constant\"() : () -> tensor<!dojo.cf8_143<64>>\n\"func.return\"() : () -> ()}) : () -> ()");
    assert!(d.message.contains("bias must be in 0..=63"), "{d}");
}

#[test]
fn empty_text_is_an_empty_module() {
    assert_eq!(parse_module("  // nothing\n").unwrap(), Module::default());
    let empty = print_module(&Module::default());
    assert!(empty.contains("^bb0:"), "MLIR needs the empty block: {empty}");
    assert_eq!(parse_module(&empty).unwrap(), Module::default());
}

#[test]
fn pipelines_parse() {
    let p = parse_pipeline("legalize-aten, lower-to-d1{mesh=d1:4x4 grid=2},canonicalize").unwrap();
    assert_eq!(p.len(), 3);
    assert_eq!(p[1].option("mesh"), Some("d1:4x4"));
    assert!(parse_pipeline("a,,b").is_err());
    assert!(parse_pipeline("Bad_Name").is_err());
    assert!(parse_pipeline("x{novalue}").is_err());
    assert_eq!(parse_pipeline("builtin.module(dce)").unwrap()[0].name, "dce");
}
