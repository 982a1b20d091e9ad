// A two-input functional model: named values, user layer names, and the merge layers dot,
// multiply and add.
use kiln::prelude::*;

model! {
    /// Whether two vectors point the same way.
    pub Agreement(a: [8], b: [8]) {
        let ea = a -> dense(16, linear, name = "embed_a");
        let eb = b -> dense(16, linear, name = "embed_b");
        let similarity = (ea, eb) -> dot(axes = 1);
        let interaction = (ea, eb) -> multiply -> dense(1, linear);
        (similarity, interaction) -> add -> activation(sigmoid)
    }
}

fn main() {
    let model = Agreement::new(7);
    assert_eq!(model.input_shapes(), [Shape::fixed(&[8]), Shape::fixed(&[8])]);
    let layers: Vec<(&str, String)> = model
        .layers()
        .iter()
        .map(|l| (l.name.as_str(), l.output.to_string()))
        .collect();
    assert_eq!(
        layers,
        [
            ("embed_a", "[B, 16]".to_string()),
            ("embed_b", "[B, 16]".to_string()),
            ("dot", "[B, 1]".to_string()),
            ("multiply", "[B, 16]".to_string()),
            ("dense", "[B, 1]".to_string()),
            ("add", "[B, 1]".to_string()),
            ("activation", "[B, 1]".to_string()),
        ]
    );
    let _: AgreementArchitecture = AgreementArchitecture;
}
