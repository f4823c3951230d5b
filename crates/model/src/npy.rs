//! `.npy` files of 2-D float32 arrays (embeddings for numpy users, teacher-cache shards), through `npyz`.

use std::io::Write;
use std::path::Path;

use npyz::WriterBuilder;

use crate::error::ModelError;

/// Writes `rows` (all of length `dim`) as a `[rows, dim]` little-endian float32 array.
pub fn write_f32(w: &mut impl Write, rows: &[Vec<f32>], dim: usize) -> std::io::Result<()> {
    let mut out = npyz::WriteOptions::<f32>::new()
        .default_dtype()
        .shape(&[rows.len() as u64, dim as u64])
        .writer(w)
        .begin_nd()?;
    for r in rows {
        out.extend(r.iter().copied())?;
    }
    out.finish()
}

/// Reads a 2-D (or 1-D, as one column) float32 C-order `.npy` file into `(rows, cols, data)`.
pub fn read_f32(path: &Path) -> Result<(usize, usize, Vec<f32>), ModelError> {
    let bad = |msg: String| ModelError::Other(format!("{}: {msg}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    let npy = npyz::NpyFile::new(&bytes[..]).map_err(|e| bad(format!("not a .npy file ({e})")))?;
    if npy.order() != npyz::Order::C {
        return Err(bad("expected C order".into()));
    }
    let (rows, cols) = match npy.shape() {
        [r, c] => (*r as usize, *c as usize),
        [r] => (*r as usize, 1),
        other => return Err(bad(format!("expected a 2-D array, found shape {other:?}"))),
    };
    let data: Vec<f32> = npy
        .into_vec()
        .map_err(|e| bad(format!("expected little-endian float32 ({e})")))?;
    Ok((rows, cols, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_a_numpy_header() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        let rows = vec![vec![1.0f32, -2.5, 3.25], vec![0.0, 1e-8, f32::MAX]];
        let mut bytes = vec![];
        write_f32(&mut bytes, &rows, 3).unwrap();
        assert_eq!(&bytes[..6], b"\x93NUMPY");
        let header = String::from_utf8_lossy(&bytes[10..bytes.len() - 24]).to_string();
        assert!(
            header.contains("'<f4'") && header.contains("(2, 3"),
            "{header}"
        );
        assert_eq!(
            (bytes.len() - 24) % 64,
            0,
            "numpy aligns the data to 64 bytes"
        );
        std::fs::write(&p, &bytes).unwrap();
        let (r, c, data) = read_f32(&p).unwrap();
        assert_eq!((r, c), (2, 3));
        assert_eq!(data, rows.concat());
        std::fs::write(&p, b"not npy").unwrap();
        assert!(read_f32(&p)
            .unwrap_err()
            .to_string()
            .contains("not a .npy file"));
    }
}
