//! Log output of every sekator binary: to stderr (stdout stays for results), `RUST_LOG` overriding each
//! binary's default level.

/// Starts the logger with `default` (an `EnvFilter` directive such as `"warn"`) unless `RUST_LOG` is set.
/// Every binary calls this first, so it also applies the allocator settings ([`crate::alloc::tune`]).
pub fn init(default: &str) {
    crate::alloc::tune();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
