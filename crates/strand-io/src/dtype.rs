//! Storage element types of embedding outputs.
//!
//! Models compute in f32; outputs may be stored narrower to save space
//! (`--dtype`). Conversion rounds to nearest even, as `half` does.

use std::fmt;
use std::str::FromStr;

/// Element type of a written tensor or array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dtype {
    /// IEEE single precision (4 bytes).
    #[default]
    F32,
    /// IEEE half precision (2 bytes): 11 significant bits, range ±65,504.
    F16,
    /// bfloat16 (2 bytes): 8 significant bits, the range of f32.
    Bf16,
}

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::Bf16 => 2,
        }
    }

    /// The name safetensors headers use.
    pub fn safetensors_name(self) -> &'static str {
        match self {
            Dtype::F32 => "F32",
            Dtype::F16 => "F16",
            Dtype::Bf16 => "BF16",
        }
    }

    /// Appends the little-endian encoding of `values` to `out`.
    pub fn encode(self, values: &[f32], out: &mut Vec<u8>) {
        out.reserve(values.len() * self.size());
        match self {
            Dtype::F32 => out.extend(values.iter().flat_map(|v| v.to_le_bytes())),
            Dtype::F16 => out.extend(
                values
                    .iter()
                    .flat_map(|&v| half::f16::from_f32(v).to_le_bytes()),
            ),
            Dtype::Bf16 => out.extend(
                values
                    .iter()
                    .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()),
            ),
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dtype::F32 => "f32",
            Dtype::F16 => "f16",
            Dtype::Bf16 => "bf16",
        })
    }
}

impl FromStr for Dtype {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" | "float32" => Ok(Dtype::F32),
            "f16" | "float16" => Ok(Dtype::F16),
            "bf16" | "bfloat16" => Ok(Dtype::Bf16),
            _ => Err(format!("unknown dtype {s:?} (expected f32, f16 or bf16)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_are_little_endian_and_rounded() {
        let mut out = Vec::new();
        Dtype::F32.encode(&[1.0], &mut out);
        assert_eq!(out, 1.0f32.to_le_bytes());
        out.clear();
        Dtype::F16.encode(&[1.0, -2.0], &mut out);
        assert_eq!(out, [0x00, 0x3c, 0x00, 0xc0]);
        out.clear();
        // 1 + 2^-9 is below bf16's half-ulp (2^-8): rounds down to 1.0.
        Dtype::Bf16.encode(&[1.0 + 1.0 / 512.0, 3.0], &mut out);
        assert_eq!(out, [0x80, 0x3f, 0x40, 0x40]);
    }

    #[test]
    fn parses_names() {
        assert_eq!("bf16".parse::<Dtype>(), Ok(Dtype::Bf16));
        assert_eq!("float16".parse::<Dtype>(), Ok(Dtype::F16));
        assert!("f64".parse::<Dtype>().is_err());
    }
}
