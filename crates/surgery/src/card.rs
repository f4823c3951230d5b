//! The cut checkpoint's model card: base model, plan per layer and sizes from the size report.

use std::path::Path;

use sekator_export::card::{self, CardFacts, ModelFacts};
use sekator_model::{read_config, BertConfig};

use crate::error::SurgeryError;
use crate::plan::Plan;
use crate::size::{Report, SizeReport};

/// Writes `README.md` + `sekator_card.json` into `dir` (the cut of `source`, whose config is `source_cfg`).
pub fn write(
    dir: &Path,
    source: &Path,
    source_cfg: &BertConfig,
    report: &Report,
    plan: &Plan,
) -> Result<(), SurgeryError> {
    let (mut base, license) = card::base_of(source, source_cfg)?;
    let first_cut = card::read_facts(source)?.is_none();
    if first_cut {
        fill(&mut base, &report.before);
    }
    let mut model = ModelFacts::shape_of("pruned", &read_config(dir)?);
    fill(&mut model, &report.after);
    let facts = CardFacts {
        base,
        model,
        license,
        // A re-cut keeps the layer indices of its own input; mapping them back is left to its plan.json.
        layers_kept: plan.keep_layers.clone(),
        stages: vec!["surgery".into()],
        ..Default::default()
    };
    card::write_card(dir, &facts)?;
    Ok(())
}

fn fill(m: &mut ModelFacts, s: &SizeReport) {
    m.params = Some(s.params.total);
    m.flops_per_token = Some(s.flops_per_token);
    m.file_bytes = s.file.map(|f| f.bytes);
}
