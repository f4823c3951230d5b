//! Deterministic safetensors headers.
//!
//! safetensors 0.6 takes a file's `__metadata__` as a `HashMap` and serialises it in that map's order,
//! which changes from process to process: with two or more entries (`format` + `step` in optimizer
//! state, `format` + `checkpoint_hash` in importance scores) the same tensors gave different bytes from
//! run to run. The object always comes first in the header, and the same entries serialise to the same
//! length in any order, so it is rewritten in key order in place.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::error::ModelError;

/// What safetensors writes before the metadata object: the header opens with it.
const PREFIX: &[u8] = b"{\"__metadata__\":";

/// The metadata object in key order, as JSON.
fn sorted_json(metadata: &HashMap<String, String>) -> Vec<u8> {
    let sorted: BTreeMap<&String, &String> = metadata.iter().collect();
    serde_json::to_vec(&sorted).expect("a map of strings serialises")
}

/// How many leading bytes of a serialised file [`sort_metadata`] rewrites.
fn patched_len(metadata: &HashMap<String, String>) -> usize {
    8 + PREFIX.len() + sorted_json(metadata).len()
}

/// Rewrites the `__metadata__` object of serialised safetensors bytes (`file` starts with the 8-byte
/// header length and holds at least the metadata object) in key order.
pub fn sort_metadata(
    file: &mut [u8],
    metadata: &HashMap<String, String>,
) -> Result<(), ModelError> {
    let json = sorted_json(metadata);
    let start = 8 + PREFIX.len();
    let end = start + json.len();
    let found = file
        .get(start..end)
        .map(serde_json::from_slice::<HashMap<String, String>>);
    if file.get(8..start) != Some(PREFIX) || !matches!(found, Some(Ok(ref m)) if m == metadata) {
        return Err(ModelError::Other(
            "safetensors header does not open with the expected metadata object".into(),
        ));
    }
    file[start..end].copy_from_slice(&json);
    Ok(())
}

/// [`sort_metadata`] on a file safetensors has just written.
pub fn sort_metadata_in_file(
    path: &Path,
    metadata: &HashMap<String, String>,
) -> Result<(), ModelError> {
    let io = |e| ModelError::io(path, e);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io)?;
    let mut head = vec![0u8; patched_len(metadata)];
    f.read_exact(&mut head).map_err(io)?;
    sort_metadata(&mut head, metadata)?;
    f.seek(SeekFrom::Start(0)).map_err(io)?;
    f.write_all(&head).map_err(io)?;
    f.flush().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::{Dtype, TensorView};

    fn serialized(meta: &HashMap<String, String>) -> Vec<u8> {
        let data = [0u8; 8];
        let view = TensorView::new(Dtype::F32, vec![2], &data).unwrap();
        safetensors::tensor::serialize([("t", view)], Some(meta.clone())).unwrap()
    }

    #[test]
    fn metadata_comes_out_in_key_order_and_still_reads() {
        let meta: HashMap<String, String> = (0..6)
            .map(|i| (format!("key{}", 5 - i), format!("value {i}")))
            .collect();
        let mut bytes = serialized(&meta);
        sort_metadata(&mut bytes, &meta).unwrap();
        let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header = std::str::from_utf8(&bytes[8..8 + header_len]).unwrap();
        let expected =
            "{\"__metadata__\":{\"key0\":\"value 5\",\"key1\":\"value 4\",\"key2\":\"value 3\",\
                        \"key3\":\"value 2\",\"key4\":\"value 1\",\"key5\":\"value 0\"},";
        assert!(header.starts_with(expected), "{header}");
        let (_, read) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(read.metadata().as_ref(), Some(&meta));
    }

    #[test]
    fn a_header_without_that_object_is_refused() {
        let meta: HashMap<String, String> = [("a".to_string(), "b".to_string())].into();
        let mut bytes = serialized(&meta);
        let other: HashMap<String, String> = [("a".to_string(), "c".to_string())].into();
        assert!(sort_metadata(&mut bytes, &other).is_err());
    }
}
