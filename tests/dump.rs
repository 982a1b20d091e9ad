//! `KILN_DUMP` writes the graph, each kernel's Cranelift IR and a per-kernel profile. (Its own
//! test binary: it sets process-wide environment variables.)

use kiln::prelude::*;

#[test]
fn kiln_dump_writes_graph_clif_and_profile() {
    let dir = std::env::temp_dir().join(format!("kiln-dump-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::env::set_var("KILN_DUMP", "graph,clif,profile");
    std::env::set_var("KILN_DUMP_DIR", &dir);

    let arch = Sequential::new(&[5]).add(Layer::dense(3, Activation::Softmax));
    let mut model = Model::new(arch, 0).unwrap();
    let x = Tensor::from_f32(&[2, 5], vec![0.1; 10]).unwrap();
    model.predict(&x, 2).unwrap();
    model.predict(&x, 2).unwrap();
    drop(model);

    let files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let dot = read("predict.graph.dot");
    assert!(
        dot.starts_with("digraph") && dot.contains("matmul") && dot.contains("dense"),
        "{dot}"
    );
    let clif: Vec<&String> = files
        .iter()
        .filter(|f| f.starts_with("predict.b2.") && f.ends_with(".clif"))
        .collect();
    assert!(!clif.is_empty(), "{files:?}");
    assert!(read(clif[0]).contains("function"), "{}", read(clif[0]));
    let profile = read("predict.profile.txt");
    assert!(
        profile.contains("batch 2: 2 runs") && profile.contains("matmul"),
        "{profile}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
