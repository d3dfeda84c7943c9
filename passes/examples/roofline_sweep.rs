//! GEMM roofline sweep and scaling table (a benchmark script, not a test).
//!
//! ```text
//! cargo run -p dojo-passes --example roofline_sweep            # timing-only simulation
//! cargo run -p dojo-passes --example roofline_sweep -- --functional   # also compute values
//! ```
//!
//! 1. `C = A @ B` with M = N = K from 256 to 8192 on `d1`: compiled by the default lowering
//!    (`lower-to-d1`, `dce`, emit), timed by the simulator. Prints the simulated time, the
//!    Program's roofline bound and which term binds, efficiency = bound / simulated, the
//!    matmul kernels' share of it, and for context the ideal time of the whole chip at the
//!    FP32 and BF16 peaks (2 n^3 / (enabled cores x per-core peak)).
//! 2. Scaling: the same GEMM on `core`, `d1:9x9`, `d1`, `tile`.
//!
//! The sweep runs twice: f32 operands (FP32 SIMD rate) and bf16 operands with an f32 result
//! (the matrix units, 16x the FP32 rate per core; 2-byte operands on the wire and in SRAM).
//! Sizes the lowering cannot fit into SRAM are reported as such.

use std::time::Instant;

use dojo_compiler::{parse_module, PassError};
use dojo_passes::emit::emit_program;
use dojo_passes::registry::build_pipeline;
use dojo_runtime::{Device, Profile, Program, SimMesh, Target};

fn matmul_ir(n: usize, elem: &str) -> String {
    let (t, r) = (format!("tensor<{n}x{n}x{elem}>"), format!("tensor<{n}x{n}xf32>"));
    format!(
        r#""builtin.module"() ({{
  "func.func"() <{{function_type = ({t}, {t}) -> ({r}), sym_name = "gemm"}}> ({{
  ^bb0(%a: {t}, %b: {t}):
    %0 = "dojo.matmul"(%a, %b) : ({t}, {t}) -> {r}
    "func.return"(%0) : ({r}) -> ()
  }}) : () -> ()
}}) : () -> ()
"#
    )
}

fn compile(n: usize, mesh: &str, elem: &str) -> Result<Program, String> {
    let mut module = parse_module(&matmul_ir(n, elem)).map_err(|d| d.to_string())?;
    let mut pm = build_pipeline(&format!("lower-to-d1{{mesh={mesh}}},dce"))?;
    pm.keep_ir(false);
    pm.run(&mut module).1.map_err(|e| match e {
        PassError::Capacity(m) => format!("does not fit: {m}"),
        e => e.to_string(),
    })?;
    emit_program(&module, None).map_err(|e| e.to_string())
}

/// Runs `p`: timing-only, or functional with constant inputs.
fn simulate(p: &Program, functional: bool) -> Result<Profile, String> {
    if !functional {
        return SimMesh::timing_only().time(p).map_err(|e| e.to_string());
    }
    let data: Vec<Vec<f32>> = p.inputs.iter().map(|t| vec![0.5; t.shape.iter().product()]).collect();
    let views: Vec<(&[usize], &[f32])> =
        p.inputs.iter().zip(&data).map(|(t, d)| (t.shape.as_slice(), d.as_slice())).collect();
    SimMesh::new().execute(p, &views).map(|(_, prof)| prof).map_err(|e| e.to_string())
}

fn ms(s: f64) -> String {
    format!("{:.4}", s * 1e3)
}

fn main() {
    let functional = std::env::args().any(|a| a == "--functional");
    let mode = if functional { "functional" } else { "timing-only" };
    let d1 = Target::preset("d1").unwrap();
    let cores = d1.enabled_cores() as f64;
    let fp32 = d1.fp32_flops_per_cycle * d1.clock_hz;
    let bf16 = d1.matrix_flops_per_cycle * d1.clock_hz;

    for (elem, peak) in [("f32", fp32), ("bf16", bf16)] {
    println!("## GEMM sweep on d1 ({elem} operands, f32 result; {mode} simulation)\n");
    println!(
        "| M=N=K | cores | simulated ms | roofline ms | binds | efficiency | matmul ops eff. | \
         util. of d1 peak of the format | ideal d1 FP32 ms | ideal d1 BF16 ms | instrs | sim wall s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for n in [256usize, 512, 1024, 2048, 4096, 8192] {
        let flops = 2.0 * (n as f64).powi(3);
        let ideal32 = flops / (cores * fp32);
        let ideal16 = flops / (cores * bf16);
        let p = match compile(n, "d1", elem) {
            Ok(p) => p,
            Err(e) => {
                let first = e.split(';').next().unwrap_or(&e);
                println!(
                    "| {n} | — | — | — | — | — | — | — | {} | {} | — | — |  \n  ↳ {first}",
                    ms(ideal32),
                    ms(ideal16)
                );
                continue;
            }
        };
        let start = Instant::now();
        let prof = match simulate(&p, functional) {
            Ok(prof) => prof,
            Err(e) => {
                println!("| {n} | simulation failed: {e} |");
                continue;
            }
        };
        let wall = start.elapsed().as_secs_f64();
        // The matmul ops' own efficiency: summed bounds over summed spans (an op's span
        // includes the stores emitted with it: the result's, or in row blocks the block
        // before's, so blocked GEMMs score low here while the Program's efficiency rises).
        let (mut bound, mut span) = (0.0, 0.0);
        for op in prof.ops.iter().filter(|o| o.name.starts_with("d1.matmul")) {
            bound += op.roofline.seconds;
            span += op.simulated_seconds;
        }
        println!(
            "| {n} | {} | {} | {} | {} | {:.1}% | {:.1}% | {:.2}% | {} | {} | {} | {:.2} |",
            prof.cores_used,
            ms(prof.simulated_seconds),
            ms(prof.roofline_seconds),
            prof.roofline_bound.as_deref().unwrap_or("-"),
            100.0 * prof.roofline_efficiency.unwrap_or(0.0),
            if span > 0.0 { 100.0 * bound / span } else { 0.0 },
            100.0 * flops / (prof.simulated_seconds * cores * peak),
            ms(ideal32),
            ms(ideal16),
            prof.instructions,
            wall
        );
    }
    println!();
    }

    for n in [128usize, 1024, 4096] {
        println!("\n## Scaling: {n}x{n}x{n} GEMM (f32)\n");
        println!("| mesh | enabled cores | cores used | simulated ms | roofline ms | binds | efficiency | speed-up vs first that fits |");
        println!("|---|---|---|---|---|---|---|---|");
        let mut base: Option<f64> = None;
        for mesh in ["core", "d1:9x9", "d1", "tile"] {
            let t = Target::preset(mesh).unwrap();
            match compile(n, mesh, "f32").and_then(|p| simulate(&p, functional)) {
                Ok(prof) => {
                    let s = prof.simulated_seconds;
                    let b = *base.get_or_insert(s);
                    println!(
                        "| {mesh} | {} | {} | {} | {} | {} | {:.1}% | {:.1}x |",
                        t.enabled_cores(),
                        prof.cores_used,
                        ms(s),
                        ms(prof.roofline_seconds),
                        prof.roofline_bound.as_deref().unwrap_or("-"),
                        100.0 * prof.roofline_efficiency.unwrap_or(0.0),
                        b / s
                    );
                }
                Err(e) => {
                    let first = e.split(';').next().unwrap_or(&e).to_string();
                    println!("| {mesh} | {} | — | — | — | — | — | {first} |", t.enabled_cores());
                }
            }
        }
    }
}
