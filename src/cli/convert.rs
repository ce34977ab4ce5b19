//! `fuseval convert MODEL --to fp16 -o OUT`: the model as fuseval measures it in another precision
//! (`onnx::fp16`), to open in Netron or bench as it is.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use prost::Message;

use crate::error::{user, ExitCode};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Target {
    /// Float16 computation, fp32 inputs and outputs (casts at the edges); integer inputs untouched.
    Fp16,
}

/// Write the model converted to another precision.
#[derive(Args, Debug)]
pub struct ConvertCmd {
    /// The model.
    pub model: PathBuf,
    /// The precision to convert to.
    #[arg(long, value_enum)]
    pub to: Target,
    /// The converted model (weights inline).
    #[arg(short = 'o', long = "out")]
    pub out: PathBuf,
    /// Overwrite an existing output.
    #[arg(long)]
    pub force: bool,
}

pub fn run(cmd: ConvertCmd) -> Result<ExitCode> {
    if cmd.out.exists() && !cmd.force {
        return Err(user(format!("{} already exists: pass --force to overwrite it", cmd.out.display())));
    }
    let Target::Fp16 = cmd.to;
    let r = write_fp16(&cmd.model, &cmd.out)?;
    println!(
        "wrote {}: {} nodes in fp16, {} initializers fp16 ({} kept fp32), {} casts, {} constant values moved into fp16's range",
        cmd.out.display(),
        r.converted_nodes,
        r.initializers_fp16,
        r.initializers_fp32.len(),
        r.casts,
        r.clamped
    );
    for (name, op, why) in &r.kept {
        println!("  kept in fp32: {op} `{name}`: {why}");
    }
    Ok(ExitCode::Ok)
}

/// Load `model` (weights inline), convert it to fp16 ([`crate::onnx::fp16`]) and write it to `out`
/// atomically; what the conversion did. Used by `convert` and by `bench --precision fp16`.
pub fn write_fp16(model: &Path, out: &Path) -> Result<crate::onnx::fp16::Fp16Report> {
    let loaded = crate::load::load(model, &[])?;
    write_fp16_proto(&loaded.full_proto()?, model, out)
}

/// [`write_fp16`] for a model already in memory (weights inline); `model` names it in errors.
pub fn write_fp16_proto(
    proto: &tract_onnx::pb::ModelProto,
    model: &Path,
    out: &Path,
) -> Result<crate::onnx::fp16::Fp16Report> {
    let (m, r) = crate::onnx::fp16::to_fp16(proto)
        .map_err(|e| user(format!("{}: cannot convert to fp16: {e:#}", model.display())))?;
    if let Some(d) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    crate::report::atomic_write(out, &m.encode_to_vec())?;
    Ok(r)
}
