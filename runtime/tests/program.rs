//! Program validation errors and JSON round trips.

mod common;

use common::*;
use dojo_runtime::*;

fn err(p: &Program) -> String {
    p.validate().unwrap_err().message
}

#[test]
fn buffer_on_a_disabled_or_missing_core_is_rejected() {
    let mut b = Builder::new("d1");
    b.buf((17, 3), &[4]);
    let m = err(&b.p);
    assert!(
        m.contains("buffer 0") && m.contains("(17,3)") && m.contains("disabled"),
        "{m}"
    );

    let mut b = Builder::new("d1:4x4");
    b.buf((4, 0), &[4]);
    let m = err(&b.p);
    assert!(
        m.contains("(4,0)") && m.contains("outside the 4 x 4 mesh"),
        "{m}"
    );
}

#[test]
fn sram_overflow_reports_core_instruction_and_numbers() {
    let mut b = Builder::new("core");
    b.buf((0, 0), &[512, 512]); // 1 MiB
    b.buf((0, 0), &[512, 512]);
    let m = err(&b.p);
    assert!(
        m.starts_with(
            "core (0,0) needs 2,097,152 B of SRAM at instruction 1 but has 1,179,648 B usable \
             (1.25 MiB minus 128 KiB reserve)"
        ),
        "{m}"
    );
    assert!(m.contains("buffer 1"), "{m}");

    // Freeing the first makes room for the second.
    let mut b = Builder::new("core");
    let x = b.buf((0, 0), &[512, 512]);
    b.push(Instr::Free { buf: x });
    b.buf((0, 0), &[512, 512]);
    let stats = b.p.validate().unwrap();
    assert_eq!(
        stats.peak_sram_per_core,
        vec![(CoreId::new(0, 0), 1_048_576)]
    );
    assert_eq!(stats.cores_used, 1);
}

#[test]
fn dtype_decides_sram_bytes() {
    let mut b = Builder::new("d1:1x2");
    let x = b.decl((0, 0), &[10]);
    b.p.buffers[x].dtype = DType::Bool;
    b.push(Instr::Alloc { buf: x });
    let y = b.decl((0, 1), &[10]);
    b.p.buffers[y].dtype = DType::I64;
    b.push(Instr::Alloc { buf: y });
    let stats = b.p.validate().unwrap();
    assert_eq!(
        stats.peak_sram_per_core,
        vec![(CoreId::new(0, 0), 10), (CoreId::new(0, 1), 80)]
    );
    assert_eq!(stats.cores_used, 2);
}

#[test]
fn region_out_of_bounds_names_the_instruction_and_dim() {
    let mut b = Builder::new("core");
    let i = b.input(&[8, 8]);
    let x = b.buf((0, 0), &[8, 8]);
    b.push(Instr::Load {
        input: i,
        src: Region::new(vec![4, 0], vec![8, 8]),
        buf: x,
        dst: Region::full(&[8, 8]),
    });
    let m = err(&b.p);
    assert!(m.starts_with("instruction 1 (Load)"), "{m}");
    assert!(m.contains("out of bounds on dim 0 of input 0"), "{m}");

    let mut b = Builder::new("core");
    let i = b.input(&[8, 8]);
    let x = b.buf((0, 0), &[8, 8]);
    b.push(Instr::Load {
        input: i,
        src: Region::full(&[8, 8]),
        buf: x,
        dst: Region::new(vec![0], vec![64]),
    });
    assert!(err(&b.p).contains("rank 2 of buffer 0"));

    let mut b = Builder::new("core");
    let i = b.input(&[8, 8]);
    let x = b.buf((0, 0), &[8, 8]);
    b.push(Instr::Load {
        input: i,
        src: Region::new(vec![0, 0], vec![4, 8]),
        buf: x,
        dst: Region::new(vec![0, 0], vec![8, 4]),
    });
    assert!(err(&b.p).contains("differ"));
}

#[test]
fn kernel_inputs_must_be_on_the_output_core() {
    let mut b = Builder::new("d1:2x2");
    let a = b.buf((0, 0), &[4, 4]);
    let w = b.buf((0, 1), &[4, 4]);
    let o = b.buf((0, 0), &[4, 4]);
    b.push(Instr::Kernel {
        op: KernelOp::MatMul { accumulate: false, epilogue: vec![] },
        inputs: vec![a, w],
        output: o,
    });
    let m = err(&b.p);
    assert!(m.starts_with("instruction 3 (Kernel)"), "{m}");
    assert!(
        m.contains("input 1 (buffer 1) is on core (0,1)") && m.contains("core (0,0)"),
        "{m}"
    );
}

#[test]
fn liveness_is_checked() {
    // Use before Alloc.
    let mut b = Builder::new("core");
    let x = b.decl((0, 0), &[4]);
    b.push(Instr::Fill { buf: x, value: 1.0 });
    let m = err(&b.p);
    assert!(
        m.starts_with("instruction 0 (Fill)") && m.contains("before its Alloc"),
        "{m}"
    );
    // Use after Free.
    let mut b = Builder::new("core");
    let x = b.buf((0, 0), &[4]);
    b.push(Instr::Free { buf: x });
    b.push(Instr::Fill { buf: x, value: 1.0 });
    assert!(err(&b.p).contains("after its Free"));
    // Double Alloc.
    let mut b = Builder::new("core");
    let x = b.buf((0, 0), &[4]);
    b.push(Instr::Alloc { buf: x });
    assert!(err(&b.p).contains("already allocated"));
    // Unknown buffer.
    let mut b = Builder::new("core");
    b.push(Instr::Free { buf: 3 });
    assert!(err(&b.p).contains("buffer 3 does not exist"));
}

fn step(op: BinaryOp, a: FusedArg, b: FusedArg) -> FusedStep {
    FusedStep { f: FusedFn::Binary(op), args: vec![a, b] }
}

#[test]
fn kernel_shapes_are_checked() {
    // (op, input shapes, output shape, expected message fragment)
    type Case = (KernelOp, Vec<Vec<usize>>, Vec<usize>, &'static str);
    let cases: Vec<Case> = vec![
        (
            KernelOp::MatMul { accumulate: false, epilogue: vec![] },
            vec![vec![2, 3], vec![4, 5]],
            vec![2, 5],
            "do not fit",
        ),
        (
            KernelOp::Binary { op: BinaryOp::Add },
            vec![vec![3], vec![4]],
            vec![4],
            "does not broadcast",
        ),
        (
            KernelOp::Transpose { perm: vec![0, 0] },
            vec![vec![2, 3]],
            vec![2, 3],
            "not a permutation",
        ),
        (
            KernelOp::Transpose { perm: vec![1, 0] },
            vec![vec![2, 3]],
            vec![2, 3],
            "gives [3, 2]",
        ),
        (
            KernelOp::Reshape,
            vec![vec![2, 3]],
            vec![7],
            "element counts differ",
        ),
        (
            KernelOp::ReduceSum { dims: vec![2] },
            vec![vec![2, 3]],
            vec![2, 1],
            "below the input rank",
        ),
        (
            KernelOp::ReduceSum { dims: vec![1] },
            vec![vec![2, 3]],
            vec![2],
            "keepdim",
        ),
        (
            KernelOp::Unary { op: UnaryOp::Exp },
            vec![vec![2, 3], vec![2, 3]],
            vec![2, 3],
            "takes 1 input",
        ),
        (
            KernelOp::Select,
            vec![vec![2], vec![2]],
            vec![2],
            "takes 3 input",
        ),
        // Epilogues: a third input needs one; the epilogue reads an input that is not
        // there, or one of a shape that does not broadcast to the result, or a later step.
        (
            KernelOp::MatMul { accumulate: false, epilogue: vec![] },
            vec![vec![2, 3], vec![3, 5], vec![5]],
            vec![2, 5],
            "takes 2 inputs (a, b), got 3",
        ),
        (
            KernelOp::MatMul { accumulate: false, epilogue: vec![step(BinaryOp::Add, FusedArg::Input(0), FusedArg::Input(2))] },
            vec![vec![2, 3], vec![3, 5], vec![5]],
            vec![2, 5],
            "epilogue: step 0 reads input 2 of 2",
        ),
        (
            KernelOp::MatMul { accumulate: false, epilogue: vec![step(BinaryOp::Add, FusedArg::Input(0), FusedArg::Input(1))] },
            vec![vec![2, 3], vec![3, 5], vec![3]],
            vec![2, 5],
            "epilogue: input 1 of shape [3] does not broadcast",
        ),
        (
            KernelOp::MatMul { accumulate: true, epilogue: vec![step(BinaryOp::Add, FusedArg::Input(0), FusedArg::Step(0))] },
            vec![vec![2, 3], vec![3, 5]],
            vec![2, 5],
            "epilogue: step 0 reads step 0",
        ),
    ];
    for (op, ins, out, want) in cases {
        let mut b = Builder::new("core");
        let bufs: Vec<BufId> = ins.iter().map(|s| b.buf((0, 0), s)).collect();
        let o = b.buf((0, 0), &out);
        b.push(Instr::Kernel {
            op: op.clone(),
            inputs: bufs,
            output: o,
        });
        let m = err(&b.p);
        assert!(m.contains(want) && m.contains("(Kernel)"), "{op:?}: {m}");
    }
}

#[test]
fn copies_routed_through_harvested_sites_are_counted() {
    let mut b = Builder::new("d1");
    let x = b.buf((4, 18), &[4]);
    let y = b.buf((5, 19), &[4]);
    // XY: along row 4 to column 19 (the harvested site (4,19)), then down.
    b.push(Instr::Copy {
        src: x,
        src_region: Region::full(&[4]),
        dst: y,
        dst_region: Region::full(&[4]),
    });
    assert_eq!(b.p.validate().unwrap().copies_through_disabled, 1);
}

fn sample_program() -> Program {
    let mut b = Builder::new("d1:2x2");
    let i = b.input(&[4, 4]);
    let x = b.load_full(i, (0, 0));
    let y = b.buf((1, 1), &[4, 4]);
    b.push(Instr::Copy {
        src: x,
        src_region: Region::full(&[4, 4]),
        dst: y,
        dst_region: Region::full(&[4, 4]),
    });
    let z = b.buf((1, 1), &[4, 4]);
    b.push(Instr::Fill {
        buf: z,
        value: f32::NEG_INFINITY,
    });
    b.push(Instr::Kernel {
        op: KernelOp::Binary { op: BinaryOp::Max },
        inputs: vec![y, z],
        output: z,
    });
    b.push(Instr::Kernel {
        op: KernelOp::Scale { factor: 0.1 },
        inputs: vec![z],
        output: y,
    });
    b.push(Instr::Kernel {
        op: KernelOp::Transpose { perm: vec![1, 0] },
        inputs: vec![y],
        output: z,
    });
    let r = b.buf((1, 1), &[1, 4]);
    b.push(Instr::Kernel {
        op: KernelOp::ReduceSum { dims: vec![0] },
        inputs: vec![z],
        output: r,
    });
    b.push(Instr::Free { buf: x });
    b.store_full(z);
    let o = b.output(&[4, 4]);
    b.push(Instr::HostCopy {
        input: i,
        output: o,
    });
    b.p
}

#[test]
fn json_round_trips_byte_identically() {
    let p = sample_program();
    p.validate().unwrap();
    let s = p.to_json();
    let q = Program::from_json(&s).unwrap();
    assert_eq!(p, q);
    assert_eq!(s, q.to_json());
    assert!(
        s.contains("\"-inf\""),
        "non-finite fill is written as a string"
    );
    // Pretty form reads back too.
    assert_eq!(Program::from_json(&p.to_json_pretty()).unwrap(), p);
    // Every preset target survives the trip.
    for name in ["core", "d1", "d1:3x7", "tile"] {
        let p = Program::new(Target::preset(name).unwrap());
        let q = Program::from_json(&p.to_json()).unwrap();
        assert_eq!(p, q);
        assert_eq!(p.to_json(), q.to_json());
    }
}

#[test]
fn bad_json_and_versions_are_explained() {
    let m = Program::from_json("{\"format_version\": 1, \"target\": 3}")
        .unwrap_err()
        .message;
    assert!(m.starts_with("invalid Program JSON at line 1"), "{m}");
    let mut p = sample_program();
    p.format_version = 2;
    let m = Program::from_json(&p.to_json()).unwrap_err().message;
    assert!(m.contains("format_version 2 is not supported"), "{m}");
    assert!(p
        .validate()
        .unwrap_err()
        .message
        .contains("format_version 2"));
}
