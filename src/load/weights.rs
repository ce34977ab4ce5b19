//! Lazy weights: decode an ONNX file without copying its initializers' bytes.
//!
//! A BERT-base file is 440 MB of weights around a few hundred kB of graph. Copying the weights costs
//! more than everything else `inspect` does, so the file is memory-mapped, the protobuf is re-written
//! without the initializers' `raw_data` fields, and that slim copy is decoded. Each initializer's bytes
//! stay in the map (or in its external-data file) until a carved model needs them.

use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use tract_onnx::pb;

/// Where an initializer's bytes are.
#[derive(Clone, Debug)]
pub enum Bytes {
    /// Inline in the model file, at this range.
    Mapped(Range<usize>),
    /// In an external-data file.
    External { file: PathBuf, offset: u64, length: u64 },
    /// In the decoded proto itself (typed fields such as `float_data`, or no data).
    Inline,
}

/// The mapped model file and where every initializer's bytes are, by initializer index.
pub struct Weights {
    map: Option<memmap2::Mmap>,
    pub bytes: Vec<Bytes>,
}

impl std::fmt::Debug for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Weights({} initializers)", self.bytes.len())
    }
}

impl Weights {
    /// The initializer `t` (index `ix`) with its bytes in `raw_data`.
    pub fn full(&self, ix: usize, t: &pb::TensorProto) -> Result<pb::TensorProto> {
        let mut t = t.clone();
        match self.bytes.get(ix) {
            Some(Bytes::Mapped(r)) => {
                t.raw_data = self.map.as_ref().map(|m| m[r.clone()].to_vec()).unwrap_or_default();
            }
            Some(Bytes::External { file, offset, length }) => {
                use std::io::{Read, Seek, SeekFrom};
                let mut f = std::fs::File::open(file)?;
                f.seek(SeekFrom::Start(*offset))?;
                let mut buf = vec![0; *length as usize];
                f.read_exact(&mut buf)?;
                t.raw_data = buf;
                t.data_location = None;
                t.external_data.clear();
            }
            _ => {}
        }
        Ok(t)
    }
}

/// Map `path` and decode it without initializer bytes. Errors are plain strings for the caller to
/// wrap: the protobuf does not parse.
pub fn decode(path: &Path) -> Result<(pb::ModelProto, Weights)> {
    let file = std::fs::File::open(path)?;
    // SAFETY: the file is only read; if another process truncates it meanwhile, reads may fault,
    // as with any memory-mapped input.
    let map = unsafe { memmap2::Mmap::map(&file)? };
    let mut ranges = vec![];
    let slim = slim_message(&map, 0, Level::Model, &mut ranges)?;
    let proto: pb::ModelProto = prost::Message::decode(slim.as_slice())?;
    let n = proto.graph.as_ref().map(|g| g.initializer.len()).unwrap_or(0);
    if ranges.len() != n {
        bail!("initializer count mismatch ({} scanned, {n} decoded)", ranges.len());
    }
    let bytes = ranges.into_iter().map(|r| r.map(Bytes::Mapped).unwrap_or(Bytes::Inline)).collect();
    Ok((proto, Weights { map: Some(map), bytes }))
}

#[derive(Clone, Copy, PartialEq)]
enum Level {
    Model,
    Graph,
    Tensor,
}

/// Copy a message, descending ModelProto.graph (7) → GraphProto.initializer (5) and dropping each
/// TensorProto.raw_data (9), whose range is recorded (one entry per initializer).
fn slim_message(buf: &[u8], base: usize, level: Level, ranges: &mut Vec<Option<Range<usize>>>) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(if level == Level::Tensor { 64 } else { buf.len().min(1 << 20) });
    let mut pos = 0;
    let mut raw = None;
    while pos < buf.len() {
        let start = pos;
        let key = varint(buf, &mut pos)?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                varint(buf, &mut pos)?;
            }
            1 => pos += 8,
            5 => pos += 4,
            2 => {
                let len = varint(buf, &mut pos)? as usize;
                let body = pos..pos
                    .checked_add(len)
                    .filter(|&e| e <= buf.len())
                    .ok_or_else(|| anyhow::anyhow!("truncated field {field}"))?;
                pos = body.end;
                let descend = match (level, field) {
                    (Level::Model, 7) => Some(Level::Graph),
                    (Level::Graph, 5) => Some(Level::Tensor),
                    _ => None,
                };
                if let Some(next) = descend {
                    // a tensor records exactly one range entry, raw or not
                    let inner = slim_message(&buf[body.clone()], base + body.start, next, ranges)?;
                    out.extend_from_slice(&buf[start..start + key_len(buf, start)?]);
                    put_varint(&mut out, inner.len() as u64);
                    out.extend_from_slice(&inner);
                    continue;
                }
                if level == Level::Tensor && field == 9 {
                    raw = Some(base + body.start..base + body.end);
                    continue;
                }
            }
            _ => bail!("unsupported protobuf wire type {wire} in field {field}"),
        }
        if pos > buf.len() {
            bail!("truncated field {field}");
        }
        out.extend_from_slice(&buf[start..pos]);
    }
    if level == Level::Tensor {
        ranges.push(raw);
    }
    Ok(out)
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let Some(&b) = buf.get(*pos) else { bail!("truncated varint") };
        *pos += 1;
        v |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    bail!("varint too long")
}

fn key_len(buf: &[u8], start: usize) -> Result<usize> {
    let mut p = start;
    varint(buf, &mut p)?;
    Ok(p - start)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}
