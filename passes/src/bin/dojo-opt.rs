//! `dojo-opt`: the compiler developer's driver, after `mlir-opt`.
//!
//! `dojo-opt FILE` parses, verifies and reprints; `--pass-pipeline='a,b{k=v}'` runs passes
//! (verifying after each); `--emit=mlir` prints standard MLIR (func/linalg/arith/tensor) for
//! graph-level IR; `--emit=program` prints the runtime Program (JSON) for mesh-level IR.
//! Errors go to stderr as `FILE:LINE:COL: error: ...` and the exit code is 1.

use dojo_compiler::verify::locate;
use dojo_compiler::{parse_module_with_locations, print_module, verify};
use dojo_passes::emit::emit_program;
use dojo_passes::registry::{build_pipeline, PASSES};
use std::io::{Read, Write};
use std::process::ExitCode;

const USAGE: &str = "usage: dojo-opt [FILE|-] [--pass-pipeline=PIPELINE] [--emit=ir|mlir|program]
                [--print-ir-after-all] [--list-passes] [-o OUTPUT]

With no pipeline, dojo-opt parses, verifies and reprints FILE (stdin when FILE is - or absent).
A FILE ending in .json is a captured graph (torch_dojo.capture) and is imported as aten IR.
Example: dojo-opt mlp.mlir --pass-pipeline='legalize-aten,lower-to-d1{mesh=d1}'";

struct Args {
    input: String,
    pipeline: Option<String>,
    emit: String,
    print_after_all: bool,
    list: bool,
    output: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args { input: "-".into(), pipeline: None, emit: "ir".into(), print_after_all: false, list: false, output: None };
    let mut it = std::env::args().skip(1);
    let mut have_input = false;
    while let Some(arg) = it.next() {
        if let Some(p) = arg.strip_prefix("--pass-pipeline=") {
            a.pipeline = Some(p.to_string());
        } else if arg == "--pass-pipeline" || arg == "-p" {
            a.pipeline = Some(it.next().ok_or("--pass-pipeline needs a value")?);
        } else if let Some(e) = arg.strip_prefix("--emit=") {
            if !["ir", "mlir", "program"].contains(&e) {
                return Err(format!("--emit must be ir, mlir or program, not '{e}'"));
            }
            a.emit = e.to_string();
        } else if arg == "--print-ir-after-all" {
            a.print_after_all = true;
        } else if arg == "--list-passes" {
            a.list = true;
        } else if arg == "-o" {
            a.output = Some(it.next().ok_or("-o needs a file name")?);
        } else if arg == "-h" || arg == "--help" {
            return Err(String::new());
        } else if arg.starts_with('-') && arg != "-" {
            return Err(format!("unknown option '{arg}'"));
        } else if have_input {
            return Err(format!("more than one input file ('{}' and '{arg}')", a.input));
        } else {
            a.input = arg;
            have_input = true;
        }
    }
    Ok(a)
}

fn run() -> Result<(), String> {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return Ok(());
        }
        Err(e) => return Err(format!("{e}\n{USAGE}")),
    };
    if args.list {
        for (name, summary, options) in PASSES {
            println!("{name:16} {summary}{}", if options.is_empty() { String::new() } else { format!(" [{options}]") });
        }
        return Ok(());
    }
    let mut text = String::new();
    let name = if args.input == "-" { "<stdin>".to_string() } else { args.input.clone() };
    if args.input == "-" {
        std::io::stdin().read_to_string(&mut text).map_err(|e| format!("cannot read stdin: {e}"))?;
    } else {
        text = std::fs::read_to_string(&args.input).map_err(|e| format!("cannot read '{name}': {e}"))?;
    }
    // A captured graph (the JSON torch-dojo's capture writes, e.g. from DOJO_DUMP_DIR) imports
    // as aten IR; anything else is IR text.
    let (mut module, map) = if name.ends_with(".json") {
        let m = dojo_passes::import::import_graph(&text).map_err(|e| format!("{name}: error: {e}"))?.module;
        (m, Default::default())
    } else {
        parse_module_with_locations(&text).map_err(|d| format!("{name}:{d}"))?
    };
    if let Err(mut errors) = verify(&module) {
        locate(&mut errors, &map);
        let lines: Vec<String> = errors.iter().map(|e| format!("{name}:{e}")).collect();
        return Err(lines.join("\n"));
    }
    if let Some(p) = &args.pipeline {
        let mut pm = build_pipeline(p)?;
        pm.keep_ir(args.print_after_all);
        let (records, result) = pm.run(&mut module);
        if args.print_after_all {
            for r in &records {
                if let Some(ir) = &r.ir {
                    eprintln!("// -----// IR Dump After {} //----- //\n{ir}", r.name);
                }
            }
        }
        result.map_err(|e| format!("{name}: error: {e}"))?;
    }
    let out = match args.emit.as_str() {
        "ir" => print_module(&module),
        "program" => emit_program(&module, None).map_err(|e| format!("{name}: error: {e}"))?.to_json_pretty() + "\n",
        _ => emit_mlir(&module).map_err(|e| format!("{name}: error: {e}"))?,
    };
    match &args.output {
        Some(path) => std::fs::write(path, out).map_err(|e| format!("cannot write '{path}': {e}"))?,
        None => {
            let mut so = std::io::stdout().lock();
            // A closed pipe (e.g. `| head`) is not an error worth a panic.
            let _ = so.write_all(out.as_bytes());
        }
    }
    Ok(())
}

#[cfg(feature = "mlir")]
fn emit_mlir(m: &dojo_compiler::Module) -> Result<String, String> {
    dojo_passes::mlir::emit_mlir(m)
}

#[cfg(not(feature = "mlir"))]
fn emit_mlir(_: &dojo_compiler::Module) -> Result<String, String> {
    Err("this dojo-opt was built without MLIR support: rebuild with `--features mlir` (make builds it so)".into())
}

fn main() -> ExitCode {
    let result = std::panic::catch_unwind(run);
    match result {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("dojo-opt: internal error (a bug in torch-dojo; please report it with the input file)");
            ExitCode::from(2)
        }
    }
}
