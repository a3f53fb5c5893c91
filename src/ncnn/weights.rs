//! The `.bin`: every layer's weights back to back, in layer order, read as ncnn's ModelBin reads
//! them (raw float32, or a 4-byte tag then float32 or float16).

use anyhow::{Result, bail};

/// The storage tag of float16 data.
const TAG_F16: u32 = 0x0130_6B47;
/// The storage tag of int8 data.
const TAG_INT8: u32 = 0x000D_4B38;

/// Reads the `.bin` front to back; errors are about the layer being read (the caller names it).
pub(super) struct WeightReader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> WeightReader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, at: 0 }
    }

    /// `count` raw float32 values (ncnn type 1).
    pub fn raw_f32(&mut self, count: usize) -> Result<Vec<f32>> {
        Ok(self
            .take(bytes(count, 4)?)?
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    /// `count` values after a 4-byte tag (ncnn type 0): float32, or float16 flagged 0x01306B47.
    pub fn tagged(&mut self, count: usize) -> Result<Vec<f32>> {
        let tag = u32::from_le_bytes(self.take(4)?.try_into()?);
        match tag {
            0 => self.raw_f32(count),
            TAG_F16 => {
                let n = bytes(count, 2)?;
                let data = self.take(n)?;
                // The float16 data is padded to a multiple of 4 bytes.
                self.take(n.next_multiple_of(4) - n)?;
                Ok(data
                    .chunks_exact(2)
                    .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect())
            }
            TAG_INT8 => bail!("int8 weights are not supported"),
            other => bail!(
                "weights of unknown storage tag {other:#010x} (quantized tables are not supported)"
            ),
        }
    }

    /// An error unless every byte was read.
    pub fn finish(&self) -> Result<()> {
        if self.at != self.data.len() {
            bail!(
                "the .bin holds {} bytes but the layers read {}; the .param and .bin do not belong \
                 together",
                self.data.len(),
                self.at
            );
        }
        Ok(())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.data.len());
        let Some(end) = end else {
            bail!(
                "the .bin file ends at byte {} but the layer needs {n} more bytes from byte {}; \
                 the .param and .bin do not belong together",
                self.data.len(),
                self.at
            );
        };
        let s = &self.data[self.at..end];
        self.at = end;
        Ok(s)
    }
}

/// The size of `count` values of `size` bytes, or an error where that is more than memory holds.
fn bytes(count: usize, size: usize) -> Result<usize> {
    match count.checked_mul(size) {
        Some(n) => Ok(n),
        None => bail!("{count} values do not fit in memory"),
    }
}
