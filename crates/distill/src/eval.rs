//! Evaluation on dev pairs: MSE of the student's embeddings to the teacher's, and translation retrieval
//! accuracy@1 in both directions (for each en, is its own ru the most cosine-similar of all dev ru, and
//! vice versa).

use burn::tensor::{backend::Backend, Int, Tensor, TensorData};

use sekator_model::pooling::{self, l2_normalize};
use sekator_model::{BertModel, Encoder, Pooling, TextTokenizer, TokenBatch};
use sekator_pipeline::Pair;

use crate::error::Result;

/// The dev metrics type is the one `distill/summary.json` carries to the report.
pub use sekator_pipeline::artifacts::distill::DevMetrics as EvalMetrics;

/// Dev pairs with their teacher embeddings (row-major `[pairs, dim]`, un-normalised).
pub struct DevSet {
    pub pairs: Vec<Pair>,
    pub t_en: Vec<f32>,
    pub t_ru: Vec<f32>,
    pub dim: usize,
}

/// Sentence vectors of `texts` in input order, row-major `[texts, dim]` (no normalisation).
pub fn embed<B: Backend>(
    model: &BertModel<B>,
    tokenizer: &TextTokenizer,
    texts: &[String],
    pooling: Pooling,
    max_length: usize,
    batch_size: usize,
    device: &B::Device,
) -> Result<Vec<f32>> {
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let tokens = tokenizer.encode(&refs, max_length)?;
    let mut out: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
    for idx in Encoder::<B>::length_batches(&tokens, batch_size) {
        let batch = TokenBatch::new(
            &idx.iter().map(|&i| &tokens[i]).collect::<Vec<_>>(),
            tokenizer.pad_id,
        );
        let (ids, mask) = batch.tensors::<B>(device);
        let hidden = model.forward(ids, mask.clone(), None);
        let pooled = pooling::pool(model, &hidden, &mask, pooling)
            .expect("pooler presence checked at start");
        let dim = pooled.dims()[1];
        let flat: Vec<f32> = pooled.into_data().convert::<f32>().into_vec().expect("f32");
        for (r, &i) in idx.iter().enumerate() {
            out[i] = flat[r * dim..(r + 1) * dim].to_vec();
        }
    }
    Ok(out.concat())
}

/// Metrics are computed in f32 whatever the training dtype.
fn tensor<B: Backend>(flat: &[f32], dim: usize, device: &B::Device) -> Tensor<B, 2> {
    Tensor::from_data(
        TensorData::new(flat.to_vec(), [flat.len() / dim, dim]),
        (device, burn::tensor::DType::F32),
    )
}

/// Retrieval accuracy@1 of `a[i] -> b[i]` and `b[i] -> a[i]` by cosine similarity.
pub fn retrieval_accuracy<B: Backend>(a: Tensor<B, 2>, b: Tensor<B, 2>) -> (f32, f32) {
    let n = a.dims()[0];
    let device = a.device();
    let sim = l2_normalize(a).matmul(l2_normalize(b).transpose());
    let target = Tensor::<B, 1, Int>::arange(0..n as i64, &device);
    let hit = |best: Tensor<B, 2, Int>| -> f32 {
        let ok: i64 = best
            .reshape([n])
            .equal(target.clone())
            .int()
            .sum()
            .into_scalar()
            .elem();
        ok as f32 / n as f32
    };
    let ab = hit(sim.clone().argmax(1));
    let ba = hit(sim.transpose().argmax(1));
    (ab, ba)
}

use burn::tensor::ElementConversion;

#[allow(clippy::too_many_arguments)]
pub fn evaluate<B: Backend>(
    model: &BertModel<B>,
    tokenizer: &TextTokenizer,
    dev: &DevSet,
    pooling: Pooling,
    normalize: bool,
    max_length: usize,
    batch_size: usize,
    step: usize,
    device: &B::Device,
) -> Result<EvalMetrics> {
    let en: Vec<String> = dev.pairs.iter().map(|p| p.en.clone()).collect();
    let ru: Vec<String> = dev.pairs.iter().map(|p| p.ru.clone()).collect();
    let s_en = tensor::<B>(
        &embed(
            model, tokenizer, &en, pooling, max_length, batch_size, device,
        )?,
        dev.dim,
        device,
    );
    let s_ru = tensor::<B>(
        &embed(
            model, tokenizer, &ru, pooling, max_length, batch_size, device,
        )?,
        dev.dim,
        device,
    );
    let t_en = tensor::<B>(&dev.t_en, dev.dim, device);
    let t_ru = tensor::<B>(&dev.t_ru, dev.dim, device);
    let (acc_en_ru, acc_ru_en) = retrieval_accuracy(s_en.clone(), s_ru.clone());
    let prep = |t: Tensor<B, 2>| if normalize { l2_normalize(t) } else { t };
    let (s_en, s_ru, t_en, t_ru) = (prep(s_en), prep(s_ru), prep(t_en), prep(t_ru));
    let mse =
        |a: Tensor<B, 2>, b: Tensor<B, 2>| -> f32 { (a - b).square().mean().into_scalar().elem() };
    let mse_en = mse(s_en, t_en.clone());
    let mse_ru = mse(s_ru.clone(), t_ru);
    let mse_cross = mse(s_ru, t_en);
    Ok(EvalMetrics {
        step,
        mse: (mse_en + mse_ru) / 2.0,
        mse_en,
        mse_ru,
        mse_cross,
        acc_en_ru,
        acc_ru_en,
        pairs: dev.pairs.len(),
    })
}

/// The teacher's own retrieval accuracy on the dev pairs (the ceiling the student is trained towards).
pub fn teacher_accuracy<B: Backend>(dev: &DevSet, device: &B::Device) -> (f32, f32) {
    retrieval_accuracy(
        tensor::<B>(&dev.t_en, dev.dim, device),
        tensor::<B>(&dev.t_ru, dev.dim, device),
    )
}
