//! File tests: every `tests/filetests/**/*.mlir` case runs through the real `dojo-opt` binary
//! as its `// RUN:` line says, and insta keeps the output (stdout, or stderr and the exit code
//! when it fails) in `tests/filetests/snapshots/`. A `///` line says what the case checks.
//!
//! Cases whose pipeline lowers to the mesh are also checked for meaning: the input, legalized,
//! runs on the reference interpreter; the output's Program runs on the simulator; both get the
//! same random inputs and must agree within f32 tolerance. Cases that run `egraph-optimize`
//! without lowering run input and output on the interpreter and compare the same way. With
//! the `mlir` feature, every IR text in the cases (inputs and outputs) must also be readable
//! by MLIR itself.
//!
//! Refresh snapshots with `INSTA_UPDATE=always cargo test -p dojo-passes --test filetests`.

use dojo_compiler::{parse_module, Module};
use dojo_passes::emit::emit_program;
use dojo_passes::interp::{self, Array};
use dojo_passes::registry::build_pipeline;
use dojo_runtime::{Device, SimMesh};
use std::path::{Path, PathBuf};
use std::process::Command;

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/filetests")
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).expect("readable dir").map(|e| e.expect("entry").path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|e| e == "mlir") {
            out.push(p);
        }
    }
}

/// Split a RUN line into arguments, honouring single quotes.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    words.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(cur);
    }
    words
}

/// `module` with its aten ops legalized, for the interpreter.
fn legalized(name: &str, module: &Module) -> Module {
    let mut m = module.clone();
    if m.funcs.iter().flat_map(|f| &f.ops).any(|o| o.dialect() == "aten") {
        let (_, r) = build_pipeline("legalize-aten").expect("pipeline").run(&mut m);
        r.unwrap_or_else(|e| panic!("{name}: legalize for the reference failed: {e}"));
    }
    m
}

/// Graph-level cases (the `egraph-optimize` rewrites): input and output both run on the
/// interpreter, on the same random inputs, and must agree within f32 tolerance.
fn check_rewrite_semantics(name: &str, input: &Module, output: &Module) {
    let (input, output) = (legalized(name, input), legalized(name, output));
    assert_eq!(input.funcs.len(), output.funcs.len(), "{name}: function count");
    for (a, b) in input.funcs.iter().zip(&output.funcs) {
        interp::check_equivalent(a, b, &[1, 2, 3]).unwrap_or_else(|e| panic!("{name}: output differs from input: {e}"));
    }
}

/// Run the input on the interpreter and the output's Program on the simulator; compare. A
/// pipeline with a `precision{...}` pass is compared with the input after that pass (the
/// interpreter rounds to the storage formats with the compile-time biases, as the Program's
/// scales do), so the check still holds to f32 tolerance.
fn check_semantics(name: &str, input: &Module, output: &Module, precision: Option<&str>) {
    let mut reference = legalized(name, input);
    if let Some(spec) = precision {
        let (_, r) = build_pipeline(spec).expect("precision pipeline").run(&mut reference);
        r.unwrap_or_else(|e| panic!("{name}: precision for the reference failed: {e}"));
    }
    for (fi, func) in reference.funcs.iter().enumerate() {
        let inputs: Vec<Array> = func
            .arg_types()
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let t = match t {
                    dojo_compiler::Type::Tensor(t) => t,
                    _ => panic!("non-tensor arg"),
                };
                interp::random_array(t, (fi * 100 + i) as u64 + 1)
            })
            .collect();
        let want = interp::run(func, &inputs).unwrap_or_else(|e| panic!("{name}: interpreter: {e}"));
        let program = emit_program(output, Some(&func.name)).unwrap_or_else(|e| panic!("{name}: emit: {e}"));
        program.validate().unwrap_or_else(|e| panic!("{name}: program invalid: {e}"));
        let refs: Vec<(&[usize], &[f32])> = inputs.iter().map(|a| (a.shape.as_slice(), a.data.as_slice())).collect();
        let (got, profile) = SimMesh::new().execute(&program, &refs).unwrap_or_else(|e| panic!("{name}: simulator: {e}"));
        assert!(profile.simulated_seconds > 0.0, "{name}: no simulated time");
        let got: Vec<Array> = got.into_iter().map(|t| Array { shape: t.shape, data: t.data }).collect();
        interp::close(&got, &want).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn file_tests() {
    let mut files = Vec::new();
    collect(&cases_dir(), &mut files);
    assert!(files.len() >= 10, "expected the file test cases, found {}", files.len());
    let bin = env!("CARGO_BIN_EXE_dojo-opt");
    for path in files {
        let text = std::fs::read_to_string(&path).expect("readable case");
        let rel = path.strip_prefix(cases_dir()).expect("under cases").to_string_lossy().replace(".mlir", "");
        let name = rel.replace('/', "__");
        assert!(text.lines().any(|l| l.starts_with("///")), "{rel}: add a `///` line saying what the case checks");
        let run = text
            .lines()
            .find_map(|l| l.strip_prefix("// RUN:"))
            .unwrap_or_else(|| panic!("{rel}: no `// RUN:` line"));
        let words = shell_words(run);
        assert_eq!(words.first().map(String::as_str), Some("dojo-opt"), "{rel}: RUN must call dojo-opt");
        let args: Vec<String> =
            words[1..].iter().map(|w| if w == "%s" { path.to_string_lossy().into_owned() } else { w.clone() }).collect();
        let out = Command::new(bin).args(&args).output().expect("dojo-opt runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).replace(&*path.to_string_lossy(), "%s");
        assert!(out.status.code().is_some_and(|c| c <= 1), "{rel}: dojo-opt crashed: {stderr}");
        let snapshot = if out.status.success() {
            stdout.clone()
        } else {
            format!("// exit: {}\n{stderr}", out.status.code().unwrap_or(-1))
        };
        insta::with_settings!({
            snapshot_path => cases_dir().join("snapshots"),
            prepend_module_to_snapshot => false,
            input_file => &path,
            omit_expression => true,
        }, {
            insta::assert_snapshot!(name.clone(), snapshot);
        });

        let is_ir = out.status.success() && !args.iter().any(|a| a.starts_with("--emit=") && a != "--emit=ir");
        if is_ir && run.contains("lower-to-d1") {
            let input = parse_module(&text).expect("input parses");
            let output = parse_module(&stdout).unwrap_or_else(|d| panic!("{rel}: output does not parse: {d}"));
            let precision = run.find("precision{").and_then(|i| run[i..].find('}').map(|j| &run[i..=i + j]));
            check_semantics(&rel, &input, &output, precision);
        } else if is_ir && (run.contains("egraph-optimize") || run.contains("split-batch")) {
            let input = parse_module(&text).expect("input parses");
            let output = parse_module(&stdout).unwrap_or_else(|d| panic!("{rel}: output does not parse: {d}"));
            check_rewrite_semantics(&rel, &input, &output);
        }
        #[cfg(feature = "mlir")]
        {
            if parse_module(&text).is_ok() {
                dojo_passes::mlir::parse_with_mlir(&text).unwrap_or_else(|e| panic!("{rel}: MLIR rejects the input: {e}"));
            }
            if is_ir {
                dojo_passes::mlir::parse_with_mlir(&stdout).unwrap_or_else(|e| panic!("{rel}: MLIR rejects the output: {e}"));
            }
        }
    }
}
