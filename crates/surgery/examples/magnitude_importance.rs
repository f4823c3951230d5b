//! Writes a weight-magnitude stand-in importance directory for a model, in the importance stage's file
//! format, so surgery can be tried without data:
//! `cargo run --release -p sekator-surgery --example magnitude_importance -- MODEL_DIR OUT_DIR`.

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, out] = args.as_slice() else {
        anyhow::bail!("usage: magnitude_importance MODEL_DIR OUT_DIR");
    };
    let (model, out) = (PathBuf::from(model), PathBuf::from(out));
    let ck = sekator_surgery::Checkpoint::read(&model)?;
    let scores = sekator_surgery::importance::magnitude_scores(&ck)?;
    let hash = sekator_model::checkpoint_hash(&model)?;
    sekator_surgery::importance::write(&out, &ck.config, &scores, &hash)?;
    println!("wrote {}", out.display());
    Ok(())
}
