//! `export`: a sekator (or any Hugging Face BERT) model directory -> `DIR/onnx/model.onnx` (+ int8).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use sekator_export::onnx::{self, OnnxFile, OnnxOptions};

const AFTER_HELP: &str = "\
Files written (into DIR/onnx/, assembled in a hidden temporary directory and renamed into place):
  model.onnx         f32, opset 17, standard ops only
  model_qint8.onnx   dynamic int8: Linear weights int8 per output channel, activations quantized at
                     run time (DynamicQuantizeLinear + MatMulInteger); embeddings, LayerNorm, attention f32

Inputs:  input_ids, attention_mask, token_type_ids   int64 [batch_size, sequence_length]
Outputs: last_hidden_state  float [batch_size, sequence_length, hidden]
         pooler_output      float [batch_size, hidden]   (only when the checkpoint has a pooler)

Load with onnxruntime (Python):
  sess = onnxruntime.InferenceSession(\"DIR/onnx/model.onnx\")
  hidden, = sess.run([\"last_hidden_state\"], {\"input_ids\": ids, \"attention_mask\": mask,
                                              \"token_type_ids\": numpy.zeros_like(ids)})
Pool the hidden states over real tokens only (mask the padding), as DIR/1_Pooling/config.json says.
The layout (DIR/onnx/model.onnx, these input and output names) is the one sentence-transformers'
backend=\"onnx\" and text-embeddings-inference read; sekator checks it with onnxruntime only
(scripts/reference/check_portable.py).";

/// Export a BERT model directory (pruned or not) to ONNX, f32 and dynamic int8.
///
/// Every layer keeps its own head count and FFN width. The f32 model reproduces sekator's last hidden
/// state and pooler output to float rounding.
#[derive(Parser, Debug)]
#[command(version, after_long_help = AFTER_HELP)]
struct Args {
    /// Model directory: config.json and model.safetensors (Hugging Face layout).
    #[arg(long)]
    model: PathBuf,
    /// Also write onnx/model_qint8.onnx (the default).
    #[arg(long, overrides_with = "no_int8")]
    int8: bool,
    /// Write only onnx/model.onnx.
    #[arg(long, overrides_with = "int8")]
    no_int8: bool,
    /// Replace an existing DIR/onnx/ (the whole directory).
    #[arg(long)]
    overwrite: bool,
}

fn print_file(f: &OnnxFile) {
    println!(
        "{}  {:.1} MB, {} nodes, {} initializers",
        f.path.display(),
        f.bytes as f64 / 1e6,
        f.nodes,
        f.initializers
    );
}

fn main() -> ExitCode {
    sekator_model::logging::init("warn");
    let args = Args::parse();
    let result = (|| -> Result<()> {
        let opts = OnnxOptions {
            int8: args.int8 || !args.no_int8,
            overwrite: args.overwrite,
        };
        let report = onnx::export_dir(&args.model, &opts)?;
        print_file(&report.f32);
        if let Some(f) = &report.int8 {
            print_file(f);
        }
        Ok(())
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
