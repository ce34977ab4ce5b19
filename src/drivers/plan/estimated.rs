//! Estimates instead of measurements: the cost model (`crate::calibration::cost_model`) over a calibration file,
//! with the file's own records for what the cost model does not say (what ORT fused the pattern into,
//! whether the timing was trustworthy, the bottleneck).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::calibration::cost_model::{
    Benefit, CostModelOptions, Fallback, FusionCostModel, Source, VariantChoice, Workload,
};
use crate::calibration::roofline::{Ceilings, Roofline};
use crate::calibration::{FusionCalibration, Status};
use crate::error::user;
use crate::graph::ModelGraph;
use crate::patterns::Instance;

use super::assess::{rule, Assessment, Basis, Bottleneck, Verdict};

/// The cost model and the records it was built from.
pub struct Estimator {
    pub path: PathBuf,
    model: FusionCostModel,
    /// Measured records by signature (identical instances).
    by_signature: HashMap<String, FusionCalibration>,
    records: Vec<FusionCalibration>,
    pub ceilings: Option<Ceilings>,
}

impl Estimator {
    /// Build the cost model from `path` with `threshold`. It uses each record's best agreeing variant (as
    /// validate does with measurements) and never assumes a speedup for an uncalibrated pattern.
    pub fn load(path: &Path, threshold: f64) -> Result<Estimator> {
        let opts = CostModelOptions {
            fallback: Fallback::AssumeNeutral,
            variant: VariantChoice::Best,
            ..CostModelOptions::with_threshold(threshold)
        };
        let bad = |e: anyhow::Error| user(format!("--calibration {}: {e:#}", path.display()));
        let src = crate::calibration::read::read(path).map_err(bad)?;
        let model = FusionCostModel::from_source(&src, opts).map_err(bad)?;
        // the records themselves (of the precision the model answers in), for ORT's fused ops, trust and the
        // roofline
        let precision = Some(model.precision());
        let records: Vec<FusionCalibration> = src
            .records()
            .filter(|r| r.status == Status::Measured && r.precision.is_none_or(|q| Some(q) == precision))
            .cloned()
            .collect();
        let ceilings = src.ceilings().cloned();
        let by_signature = records.iter().map(|r| (r.signature.clone(), r.clone())).collect();
        Ok(Estimator { path: path.to_path_buf(), model, by_signature, records, ceilings })
    }

    /// The cost model's warnings about the file as a whole.
    pub fn warnings(&self) -> &[String] {
        self.model.warnings()
    }

    /// The cost model's estimate of fusing `inst`.
    pub fn benefit(&self, g: &ModelGraph, inst: &Instance) -> Result<Benefit> {
        self.model.benefit(inst.pattern, &Workload::of_instance_in(g, inst, self.model.precision()))
    }

    /// The record measured at this very instance (same signature), else one of the same pattern at the
    /// same size.
    fn record(&self, g: &ModelGraph, inst: &Instance, w: &Workload) -> Option<&FusionCalibration> {
        self.by_signature.get(&inst.signature(g)).or_else(|| {
            let size = w.size();
            self.records.iter().find(|r| {
                r.fusion_pattern == inst.pattern.key() && {
                    let s = Workload::of_record(r).size();
                    s > 0.0 && (s.max(size) / s.min(size) - 1.0) <= crate::calibration::cost_model::SAME_SIZE_TOLERANCE
                }
            })
        })
    }

    /// What fusing `inst` is worth by the cost model's estimate, under the one decision rule (with the
    /// trust of the calibration's record of it, when there is one).
    pub fn assess(&self, g: &ModelGraph, inst: &Instance, threshold: f64) -> Result<Assessment> {
        let w = Workload::of_instance_in(g, inst, self.model.precision());
        let b = &self.model.benefit(inst.pattern, &w)?;
        let source = b.source.name();
        if let Source::Fallback(_) = b.source {
            let mut a = Assessment::none(
                Verdict::Unmeasured,
                format!("{} has no calibration in {}: no estimate", inst.pattern, self.path.display()),
            );
            a.source = Some(source.into());
            a.records_used = Some(0);
            return Ok(a);
        }
        let rec = self.record(g, inst, &w);
        let trustworthy = rec.map(|r| r.trustworthy || !r.equivalent).unwrap_or(true);
        let (verdict, head) = rule(&b.speedup, b.equivalent, trustworthy, threshold);
        let mut parts = vec![head];
        if b.equivalent && !trustworthy {
            parts.push("the calibration record's A/A control misses 1.00".into());
        }
        parts.push(format!(
            "estimated {:.2}× ({}, {} record{})",
            b.speedup.point,
            b.source.describe(),
            b.records_used,
            if b.records_used == 1 { "" } else { "s" }
        ));
        if let Some(r) = rec {
            parts.push(super::assess::ort_fused(r.fused_by_ort, &r.ort_fused_into));
        }
        let roof: Option<Roofline> = rec.and_then(|r| r.roofline.clone()).or_else(|| {
            self.ceilings.as_ref().map(|c| Roofline::new(w.flops, (w.unfused_bytes, w.fused_bytes), (0.0, 0.0), 0.0, c))
        });
        let bottleneck = roof.map(|r| Bottleneck {
            unfused: r.unfused.bottleneck.to_string(),
            fused: r.fused.bottleneck.to_string(),
            explanation: r.explanation,
        });
        if let Some(b) = &bottleneck {
            parts.push(if b.unfused == b.fused { b.unfused.clone() } else { format!("{} → {}", b.unfused, b.fused) });
        }
        let variant = rec.map(super::assess::stands_for);
        Ok(Assessment {
            verdict,
            reason: parts.join("; "),
            basis: Basis::Estimated,
            speedup: b.equivalent.then_some(b.speedup),
            source: Some(source.into()),
            records_used: Some(b.records_used),
            variant,
            kernels: vec![],
            fused_by_ort: rec.map(|r| r.fused_by_ort),
            ort_fused_into: rec.map(|r| r.ort_fused_into.clone()).unwrap_or_default(),
            equivalent: Some(b.equivalent),
            trustworthy: rec.map(|r| r.trustworthy),
            unfused_ms: None,
            fused_ms: None,
            bottleneck,
            notes: b.warnings.clone(),
        })
    }
}
