//! `KILN_DUMP` writes the graph after each pass, the fusion and schedule reports, each kernel's
//! Cranelift IR and disassembly, and a per-kernel profile. (Its own test binary: it sets
//! process-wide environment variables.)

use kiln::prelude::*;

#[test]
fn kiln_dump_writes_graphs_fusion_schedule_clif_asm_and_profile() {
    let dir = std::env::temp_dir().join(format!("kiln-dump-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::env::set_var("KILN_DUMP", "graph,fusion,schedule,clif,asm,profile");
    std::env::set_var("KILN_DUMP_DIR", &dir);

    let arch = Sequential::new(&[5]).add(Layer::dense(3, Activation::Softmax));
    let mut model = Model::new(arch, 0).unwrap();
    let x = Tensor::from_f32(&[2, 5], vec![0.1; 10]).unwrap();
    let y = Tensor::from_i32(&[2], vec![0, 2]).unwrap();
    model.predict_with(&x, &Predict { batch_size: 2 }).unwrap();
    model.predict_with(&x, &Predict { batch_size: 2 }).unwrap();
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    model.compile(Adam::default(), loss, &[]).unwrap();
    model.train_step(&x, &y).unwrap();
    drop(model);

    let files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let dot = read("predict.b2.00_input.dot");
    assert!(dot.starts_with("digraph") && dot.contains("matmul") && dot.contains("dense"));
    // Adam's per-parameter constants are merged by CSE: the graph after that pass is dumped.
    let after: Vec<&String> = files
        .iter()
        .filter(|f| f.starts_with("train.b2.") && f.contains("_after_") && f.ends_with(".dot"))
        .collect();
    assert!(!after.is_empty(), "{files:?}");
    let fusion = read("train.b2.fusion.txt");
    assert!(
        fusion.contains("group") && fusion.contains("fuse "),
        "{fusion}"
    );
    // The kernel plan with parts and scratch, and every buffer with its offset and live range.
    let schedule = read("train.b2.schedule.txt");
    assert!(
        schedule.contains("parts")
            && schedule.contains("scratch")
            && schedule.contains("work arena")
            && schedule.contains("pinned"),
        "{schedule}"
    );
    let clif: Vec<&String> = files
        .iter()
        .filter(|f| f.starts_with("predict.b2.") && f.ends_with(".clif"))
        .collect();
    assert!(!clif.is_empty(), "{files:?}");
    assert!(read(clif[0]).contains("function"));
    // x86-64 disassembly of each kernel, as Cranelift prints it (AT&T syntax).
    let asm: Vec<&String> = files
        .iter()
        .filter(|f| f.starts_with("predict.b2.") && f.ends_with(".s"))
        .collect();
    assert_eq!(asm.len(), clif.len(), "{files:?}");
    let text = read(asm[0]);
    assert!(text.contains("ret") && text.contains("%r"), "{text}");
    let profile = read("predict.profile.txt");
    assert!(
        profile.contains("batch 2: 2 runs") && profile.contains("matmul"),
        "{profile}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
