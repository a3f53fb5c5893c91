//! The `.param` text: the magic number, the layer and blob counts, then one line per layer,
//! `type name n_in n_out input... output... key=value...`.

use std::collections::HashMap;

use anyhow::{Context as _, Result, anyhow, bail};

const MAGIC: u32 = 7767517;
/// Keys at or below this hold arrays: key `ARRAY_KEY - k` is array `k`.
const ARRAY_KEY: i32 = -23300;

/// One `key=value` of a layer line; array values (negative keys) hold their numbers.
#[derive(Debug, Clone)]
enum ParamValue {
    Number(f64),
    Array(Vec<f64>),
}

/// One layer of the `.param`, its params typed but not yet interpreted.
#[derive(Debug)]
pub(super) struct LayerLine {
    pub kind: String,
    pub name: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    params: HashMap<i32, ParamValue>,
}

impl LayerLine {
    pub fn int(&self, key: i32, default: i64) -> i64 {
        match self.params.get(&key) {
            Some(ParamValue::Number(v)) => *v as i64,
            _ => default,
        }
    }

    /// Param `key` (or `default`) as a count or size: an error where it is negative or too large.
    pub fn uint(&self, key: i32, default: u32) -> Result<u32> {
        let v = self.int(key, default.into());
        u32::try_from(v).map_err(|_| anyhow!("param {key} = {v} is out of range"))
    }

    pub fn float(&self, key: i32, default: f32) -> f32 {
        match self.params.get(&key) {
            Some(ParamValue::Number(v)) => *v as f32,
            _ => default,
        }
    }

    pub fn array(&self, key: i32) -> Vec<f32> {
        match self.params.get(&key) {
            Some(ParamValue::Array(v)) => v.iter().map(|&x| x as f32).collect(),
            _ => Vec::new(),
        }
    }

    /// The one blob the layer writes (every layer but Split writes one).
    pub fn sole_output(&self) -> Result<&str> {
        match self.outputs.as_slice() {
            [out] => Ok(out),
            outs => bail!("writes {} blobs; {} writes one", outs.len(), self.kind),
        }
    }
}

/// The layers of a `.param` file, in order.
pub(super) fn parse(text: &str) -> Result<Vec<LayerLine>> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let magic: u32 = lines
        .next()
        .and_then(|l| l.parse().ok())
        .context("the first line is not ncnn's magic number 7767517")?;
    if magic != MAGIC {
        bail!("the first line is {magic}, not ncnn's magic number 7767517");
    }
    let counts = lines
        .next()
        .context("the layer and blob counts are missing")?;
    let [layers, blobs] = counts
        .split_whitespace()
        .map(str::parse::<usize>)
        .collect::<std::result::Result<Vec<_>, _>>()
        .ok()
        .and_then(|v| <[usize; 2]>::try_from(v).ok())
        .with_context(|| format!("the second line {counts:?} is not the layer and blob counts"))?;
    let parsed: Vec<LayerLine> = lines
        .enumerate()
        .map(|(i, line)| layer_line(i + 1, line))
        .collect::<Result<_>>()?;
    if parsed.len() != layers {
        bail!(
            "the counts line says {layers} layers but the file has {} layer lines; the file is \
             cut or edited",
            parsed.len()
        );
    }
    let made: std::collections::HashSet<&str> = parsed
        .iter()
        .flat_map(|l| l.outputs.iter().map(String::as_str))
        .collect();
    if made.len() > blobs {
        bail!(
            "the counts line says {blobs} blobs but the layers make {}; the file is cut or edited",
            made.len()
        );
    }
    Ok(parsed)
}

/// Layer line `number` (from 1, after the counts).
fn layer_line(number: usize, line: &str) -> Result<LayerLine> {
    let mut fields = line.split_whitespace();
    let mut next = |what: &str| {
        fields
            .next()
            .with_context(|| format!("layer line {number}: {what} is missing"))
    };
    let kind = next("the type")?.to_owned();
    let name = next("the name")?.to_owned();
    let n_in: usize = next("the input count")?.parse().context("input count")?;
    let n_out: usize = next("the output count")?.parse().context("output count")?;
    let inputs = (0..n_in)
        .map(|_| next("an input").map(str::to_owned))
        .collect::<Result<_>>()?;
    let outputs = (0..n_out)
        .map(|_| next("an output").map(str::to_owned))
        .collect::<Result<_>>()?;
    let params = fields.map(|kv| param(&name, kv)).collect::<Result<_>>()?;
    Ok(LayerLine {
        kind,
        name,
        inputs,
        outputs,
        params,
    })
}

/// One `key=value` of layer `layer`; an array is `key=count,v1,v2,...` with `key <= ARRAY_KEY`.
fn param(layer: &str, kv: &str) -> Result<(i32, ParamValue)> {
    let (k, v) = kv
        .split_once('=')
        .with_context(|| format!("layer {layer}: {kv:?} is not key=value"))?;
    let k: i32 = k
        .parse()
        .with_context(|| format!("layer {layer}: key {k:?}"))?;
    let bad = || anyhow!("layer {layer}: value {v:?} of key {k}");
    if k > ARRAY_KEY {
        return Ok((k, ParamValue::Number(v.parse().map_err(|_| bad())?)));
    }
    let mut items = v.split(',');
    let count: usize = items.next().and_then(|c| c.parse().ok()).ok_or_else(bad)?;
    let values: Vec<f64> = items
        .map(|x| x.parse().map_err(|_| bad()))
        .collect::<Result<_>>()?;
    if values.len() != count {
        return Err(bad());
    }
    Ok((ARRAY_KEY - k, ParamValue::Array(values)))
}
