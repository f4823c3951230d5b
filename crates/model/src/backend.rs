//! Backend choice at run time: CPU (burn-flex) always, CUDA (burn-cuda) when built with `--features cuda`.
//!
//! Stages are generic over `B: Backend`; a binary wraps its work in a [`BackendTask`] (or
//! [`AutodiffTask`]) and [`run`] instantiates it for the backend the user chose. `auto` probes for the
//! CUDA driver library first, because touching a CUDA device without one panics inside burn.

use burn::tensor::backend::{AutodiffBackend, Backend};

use crate::error::ModelError;

/// The CPU backend (burn-flex: measured faster than burn-ndarray here, see BENCHMARKS.md).
pub type Cpu = burn::backend::Flex;
/// CPU with autodiff, for importance and distillation.
pub type CpuAutodiff = burn::backend::Autodiff<Cpu>;
#[cfg(feature = "cuda")]
pub type Gpu = burn::backend::Cuda;

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// CUDA when built in and a GPU driver is present, else CPU.
    #[default]
    Auto,
    Cpu,
    Cuda,
}

impl std::fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DeviceKind::Auto => "auto",
            DeviceKind::Cpu => "cpu",
            DeviceKind::Cuda => "cuda",
        })
    }
}

/// Work to run on whichever backend was chosen.
pub trait BackendTask {
    type Output;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output;
}

/// Work that needs gradients.
pub trait AutodiffTask {
    type Output;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output;
}

/// Whether the CUDA backend is compiled in and the driver library can be loaded.
pub fn cuda_available() -> bool {
    #[cfg(feature = "cuda")]
    {
        // SAFETY: loading the driver library runs its initialisers only; we drop it straight away.
        ["libcuda.so.1", "libcuda.so"]
            .iter()
            .any(|n| unsafe { libloading::Library::new(n) }.is_ok())
    }
    #[cfg(not(feature = "cuda"))]
    {
        false
    }
}

/// Resolves `auto` and rejects `cuda` where it cannot work, with the reason.
pub fn resolve(kind: DeviceKind) -> Result<DeviceKind, ModelError> {
    match kind {
        DeviceKind::Cpu => Ok(DeviceKind::Cpu),
        DeviceKind::Auto => Ok(if cuda_available() {
            DeviceKind::Cuda
        } else {
            DeviceKind::Cpu
        }),
        DeviceKind::Cuda if !cfg!(feature = "cuda") => Err(ModelError::Other(
            "--device cuda: this binary was built without CUDA (rebuild with `--features cuda`)"
                .into(),
        )),
        DeviceKind::Cuda if !cuda_available() => Err(ModelError::Other(
            "--device cuda: no CUDA driver found (libcuda.so.1); use --device cpu".into(),
        )),
        DeviceKind::Cuda => Ok(DeviceKind::Cuda),
    }
}

/// Runs `task` on the chosen backend.
pub fn run<T: BackendTask>(kind: DeviceKind, task: T) -> Result<T::Output, ModelError> {
    match resolve(kind)? {
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => Ok(task.run::<Gpu>(Default::default())),
        _ => Ok(task.run::<Cpu>(Default::default())),
    }
}

/// Runs `task` on the chosen backend wrapped in autodiff.
pub fn run_autodiff<T: AutodiffTask>(kind: DeviceKind, task: T) -> Result<T::Output, ModelError> {
    match resolve(kind)? {
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => Ok(task.run::<burn::backend::Autodiff<Gpu>>(Default::default())),
        _ => Ok(task.run::<CpuAutodiff>(Default::default())),
    }
}

/// A one-line name of the resolved backend, for logs and reports.
pub fn describe(kind: DeviceKind) -> String {
    match resolve(kind) {
        Ok(DeviceKind::Cuda) => "cuda (burn-cuda)".into(),
        _ => format!(
            "cpu (burn-flex, {} threads)",
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        ),
    }
}

/// How many batches the encoder runs at once on backend `B`.
///
/// burn's CPU backends run only matmuls on several threads; LayerNorm, GELU, softmax and the other
/// element-wise passes run on the calling thread, which left one of two cores idle about half the time.
/// Two batches in flight keep both busy (each batch's result is unchanged). GPUs get one: their
/// kernels are already parallel. `SEKATOR_CPU_STREAMS=N` overrides the CPU count (1 = sequential).
pub fn concurrent_batches<B: Backend>() -> usize {
    if !is_cpu::<B>() {
        return 1;
    }
    std::env::var("SEKATOR_CPU_STREAMS")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
        .max(1)
}

/// Whether `B` is one of the CPU backends (or autodiff over one), whose kernels some layers work around.
pub fn is_cpu<B: Backend>() -> bool {
    use std::any::TypeId;
    let id = TypeId::of::<B>();
    id == TypeId::of::<Cpu>()
        || id == TypeId::of::<CpuAutodiff>()
        || id == TypeId::of::<burn::backend::NdArray>()
        || id == TypeId::of::<burn::backend::Autodiff<burn::backend::NdArray>>()
}

thread_local! {
    static IN_FLIGHT_WORKER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the calling thread is one of several [`in_flight`] workers: the cores are then busy with one
/// batch each, and a kernel that would split its own work across threads should not.
pub fn on_in_flight_worker() -> bool {
    IN_FLIGHT_WORKER.with(|w| w.get())
}

/// Runs `work(i)` for `i in 0..n` on `workers` threads (inline when 1) and hands each result to `sink` on
/// the calling thread, in completion order. How CPU stages keep several batches (or masked evaluations) in
/// flight; see [`concurrent_batches`].
pub fn in_flight<R: Send>(
    n: usize,
    workers: usize,
    work: impl Fn(usize) -> R + Sync,
    mut sink: impl FnMut(usize, R),
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let workers = workers.min(n);
    if workers <= 1 {
        for i in 0..n {
            let r = work(i);
            sink(i, r);
        }
        return;
    }
    let next = AtomicUsize::new(0);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let tx = tx.clone();
            let (next, work) = (&next, &work);
            scope.spawn(move || {
                IN_FLIGHT_WORKER.with(|w| w.set(true));
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n || tx.send((i, work(i))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for (i, r) in rx {
            sink(i, r);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::in_flight;

    #[test]
    fn in_flight_delivers_every_item_once_on_the_calling_thread() {
        for workers in [1, 2, 3, 8] {
            let caller = std::thread::current().id();
            let mut seen = vec![0usize; 10];
            in_flight(
                10,
                workers,
                |i| i * i,
                |i, r| {
                    assert_eq!(std::thread::current().id(), caller, "sink off the caller");
                    assert_eq!(r, i * i, "result handed to the wrong index");
                    seen[i] += 1;
                },
            );
            assert_eq!(seen, vec![1; 10], "{workers} workers");
        }
        in_flight(0, 2, |_| 0, |_, _: i32| panic!("no items"));
    }
}
