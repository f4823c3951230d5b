//! Mixed precision: the encoder's Linear layers multiply in a reduced dtype while every parameter,
//! activation, normalisation and gradient outside those matmuls stays in the tensors' own dtype (f32).
//!
//! What PyTorch's autocast does for `nn.Linear`: inputs and weight are cast down, the product is cast back
//! up, the bias is added in f32. Gradients flow through the casts to the f32 master weights, so small
//! optimizer updates are not rounded away as they are when the weights themselves are bf16. Linear layers
//! are >95% of a BERT layer's multiply-adds at sequence length 64 and hidden 768, so the attention products
//! are left in f32.
//!
//! The setting is process-wide, as burn's default dtype of a device is: set it once before building tensors,
//! and not in a process (a test binary) whose other work expects f32 products.

use std::sync::atomic::{AtomicU8, Ordering};

use burn::tensor::FloatDType;

static MATMUL_DTYPE: AtomicU8 = AtomicU8::new(0);

/// The dtype Linear layers multiply in, `None` for the tensors' own.
pub fn matmul_dtype() -> Option<FloatDType> {
    match MATMUL_DTYPE.load(Ordering::Relaxed) {
        1 => Some(FloatDType::BF16),
        2 => Some(FloatDType::F16),
        _ => None,
    }
}

/// Sets the dtype of Linear-layer products for this process (`None`, F32 or F64: the tensors' own).
pub fn set_matmul_dtype(dtype: Option<FloatDType>) {
    let code = match dtype {
        Some(FloatDType::BF16) => 1,
        Some(FloatDType::F16) => 2,
        _ => 0,
    };
    MATMUL_DTYPE.store(code, Ordering::Relaxed);
}
