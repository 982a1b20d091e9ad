//! Bad input never crashes or corrupts: each mistake gets an `Err` that names it.

mod common;

use common::*;
use kiln::prelude::*;

fn dense_program() -> (Graph, Program) {
    let mut g = Graph::new();
    let x = g.input("x", Shape::batched(&[5]), DType::F32).unwrap();
    let w = g.parameter("w", Shape::fixed(&[5, 3])).unwrap();
    let y = g.matmul(x, w, false, false).unwrap();
    let p = Program::compile(&g, &[y], &[], 4).unwrap();
    (g, p)
}

#[test]
fn wrong_shape_dtype_missing_and_unknown_inputs_are_errors() {
    let (_, mut p) = dense_program();
    let mut r = rng(0);
    let bad_shape = uniform(&mut r, &[4, 6], 0.0, 1.0);
    let e = p.run(&[("x", &bad_shape)]).unwrap_err();
    assert!(
        matches!(e, Error::InputMismatch { ref name, .. } if name == "x"),
        "{e}"
    );
    assert!(
        e.to_string().contains("[4, 5]") && e.to_string().contains("[4, 6]"),
        "{e}"
    );

    let bad_dtype = Tensor::from_i32(&[4, 5], vec![0; 20]).unwrap();
    let e = p.run(&[("x", &bad_dtype)]).unwrap_err();
    assert!(matches!(e, Error::InputMismatch { .. }), "{e}");
    assert!(e.to_string().contains("i32"), "{e}");

    let e = p.run(&[]).unwrap_err();
    assert!(
        matches!(e, Error::InputMismatch { ref name, .. } if name == "x"),
        "{e}"
    );

    let good = uniform(&mut r, &[4, 5], 0.0, 1.0);
    let e = p.run(&[("x", &good), ("z", &good)]).unwrap_err();
    assert!(matches!(e, Error::UnknownTensor(ref n) if n == "z"), "{e}");
    let w = uniform(&mut r, &[5, 3], 0.0, 1.0);
    let e = p.run(&[("x", &good), ("w", &w)]).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");

    let empty = Tensor::from_f32(&[0, 5], vec![]).unwrap();
    let e = p.run(&[("x", &empty)]).unwrap_err();
    assert!(matches!(e, Error::InputMismatch { .. }), "{e}");

    // A new batch size is a new specialisation, not an error.
    let seven = uniform(&mut r, &[7, 5], 0.0, 1.0);
    assert_eq!(p.run(&[("x", &seven)]).unwrap()[0].shape(), &[7, 3]);

    let e = p.set_parameter("w", &good).unwrap_err();
    assert!(
        matches!(e, Error::InputMismatch { ref name, .. } if name == "w"),
        "{e}"
    );
    assert!(matches!(p.parameter("nope"), Err(Error::UnknownTensor(_))));

    // The program still works after all those rejected calls.
    assert_eq!(p.run(&[("x", &good)]).unwrap()[0].shape(), &[4, 3]);
}

#[test]
fn batch_size_zero_is_an_error() {
    let mut g = Graph::new();
    let x = g.input("x", Shape::batched(&[5]), DType::F32).unwrap();
    let y = g.neg(x).unwrap();
    let e = Program::compile(&g, &[y], &[], 0).err().unwrap();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
}

#[test]
fn out_of_range_index_inputs_are_rejected_before_running() {
    let mut g = Graph::new();
    let table = g.parameter("table", Shape::fixed(&[4, 3])).unwrap();
    let idx = g.input("idx", Shape::batched(&[]), DType::I32).unwrap();
    let rows = g.gather(table, idx).unwrap();
    let labels = g.input("labels", Shape::batched(&[]), DType::I32).unwrap();
    let hot = g.one_hot(labels, 10).unwrap();
    let mut p = Program::compile(&g, &[rows, hot], &[], 3).unwrap();
    let ok_labels = Tensor::from_i32(&[3], vec![0, 9, 5]).unwrap();
    for bad in [vec![0, 4, 1], vec![-1, 0, 0]] {
        let idx = Tensor::from_i32(&[3], bad.clone()).unwrap();
        let e = p.run(&[("idx", &idx), ("labels", &ok_labels)]).unwrap_err();
        match e {
            Error::IndexOutOfRange { value, bound, .. } => {
                assert!(bad.contains(&(value as i32)));
                assert_eq!(bound, 4);
            }
            other => panic!("expected IndexOutOfRange, got {other}"),
        }
    }
    let idx = Tensor::from_i32(&[3], vec![0, 1, 2]).unwrap();
    let bad_labels = Tensor::from_i32(&[3], vec![0, 10, 1]).unwrap();
    let e = p
        .run(&[("idx", &idx), ("labels", &bad_labels)])
        .unwrap_err();
    assert!(matches!(e, Error::IndexOutOfRange { bound: 10, .. }), "{e}");
}

#[test]
fn computed_out_of_range_index_is_a_kernel_error_not_a_crash() {
    let mut g = Graph::new();
    let table = g.parameter("table", Shape::fixed(&[4, 3])).unwrap();
    let f = g.input("f", Shape::fixed(&[2]), DType::F32).unwrap();
    let idx = g.cast(f, DType::I32).unwrap();
    let rows = g.gather(table, idx).unwrap();
    let upd = g.input("u", Shape::fixed(&[2, 3]), DType::F32).unwrap();
    let sc = g.scatter_add(upd, idx, 4).unwrap();
    for (outs, name) in [([rows], "gather"), ([sc], "scatter_add")] {
        let mut p = Program::compile(&g, &outs, &[], 1).unwrap();
        let fv = Tensor::from_f32(&[2], vec![1.0, 1e9]).unwrap();
        let u = Tensor::from_f32(&[2, 3], vec![1.0; 6]).unwrap();
        let feeds: Vec<(&str, &Tensor)> = if name == "gather" {
            vec![("f", &fv)]
        } else {
            vec![("f", &fv), ("u", &u)]
        };
        // The f32 input the indices are cast from is checked before any kernel runs, and the
        // error names it and the value (issue 17; it used to be an anonymous kernel status).
        let e = p.run(&feeds).unwrap_err();
        let op = name;
        assert!(
            matches!(e, Error::IndexOutOfRange { name: ref input, value: 1_000_000_000, position: 1, .. }
                if input.contains("f (cast") && input.contains(op)),
            "{e}"
        );
        let fv = Tensor::from_f32(&[2], vec![1.0, 3.0]).unwrap();
        let feeds: Vec<(&str, &Tensor)> = if name == "gather" {
            vec![("f", &fv)]
        } else {
            vec![("f", &fv), ("u", &u)]
        };
        assert!(p.run(&feeds).is_ok(), "the status resets between runs");
    }
}

#[test]
fn shape_errors_show_expected_and_found() {
    let mut g = Graph::new();
    let a = g.input("a", Shape::batched(&[64]), DType::F32).unwrap();
    let b = g.input("b", Shape::batched(&[32]), DType::F32).unwrap();
    let e = g.add(a, b).unwrap_err();
    assert!(
        e.to_string().contains("[B, 64]") && e.to_string().contains("[B, 32]"),
        "{e}"
    );
    let w = g.parameter("w", Shape::fixed(&[32, 10])).unwrap();
    let e = g
        .scoped("dense_1", |g| g.matmul(a, w, false, false))
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("dense_1") && msg.contains("64") && msg.contains("32"),
        "{msg}"
    );
    let e = g.parameter("w", Shape::fixed(&[1])).unwrap_err();
    assert!(matches!(e, Error::Graph(_)), "{e}");
    let e = g.slice(a, 1, 10, 65).unwrap_err();
    assert!(e.to_string().contains("out of bounds"), "{e}");
    let e = g.parameter("p", Shape::batched(&[3])).unwrap_err();
    assert!(e.to_string().contains("batch"), "{e}");
}

#[test]
fn unknown_node_ids_are_errors_not_panics() {
    let mut g = Graph::new();
    let x = g.input("x", Shape::batched(&[3]), DType::F32).unwrap();
    let mut other = Graph::new();
    for _ in 0..5 {
        other.scalar(1.0).unwrap();
    }
    let foreign = other.scalar(2.0).unwrap(); // id 5: not a node of `g`
    let results = [
        g.reshape(foreign, Shape::fixed(&[1])),
        g.broadcast_to(foreign, &Shape::batched(&[3])),
        g.sum_all(foreign),
        g.transpose(foreign),
        g.cast(foreign, DType::I32),
        g.reduce_keep(kiln::compiler::ir::ReduceOp::Sum, foreign, &[0]),
        g.add(x, foreign),
        g.matmul(foreign, x, false, false),
    ];
    for r in results {
        assert!(matches!(r, Err(Error::Graph(_))), "{r:?}");
    }
    assert!(matches!(
        Program::new(&g, &[foreign], &[]),
        Err(Error::Graph(_))
    ));
}
