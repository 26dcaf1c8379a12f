//! The Caduceus character tokenizer.
//!
//! Reproduces the published `CaduceusTokenizer`: every character is
//! upper-cased and looked up in a fixed vocabulary; anything that is not
//! `A C G T N` becomes `[UNK]`. The default call appends one `[SEP]` at the end
//! and prepends nothing. Literal special-token strings such as `[MASK]` in the
//! text are recognised as one token, as the Hugging Face base class does.

/// Token ids of the published vocabulary.
pub mod id {
    pub const CLS: u32 = 0;
    pub const SEP: u32 = 1;
    pub const BOS: u32 = 2;
    pub const MASK: u32 = 3;
    pub const PAD: u32 = 4;
    pub const RESERVED: u32 = 5;
    pub const UNK: u32 = 6;
    pub const A: u32 = 7;
    pub const C: u32 = 8;
    pub const G: u32 = 9;
    pub const T: u32 = 10;
    pub const N: u32 = 11;
}

/// Size of the tokenizer's own vocabulary (models pad it, usually to 16).
pub const VOCAB_SIZE: usize = 12;

/// Special tokens recognised when they appear literally in the text
/// (case-sensitive, as in the reference).
const SPECIAL_STRINGS: [(&[u8], u32); 7] = [
    (b"[CLS]", id::CLS),
    (b"[SEP]", id::SEP),
    (b"[BOS]", id::BOS),
    (b"[MASK]", id::MASK),
    (b"[PAD]", id::PAD),
    (b"[RESERVED]", id::RESERVED),
    (b"[UNK]", id::UNK),
];

/// Id of one nucleotide byte (case-insensitive); `[UNK]` for anything else.
#[inline]
pub fn base_id(b: u8) -> u32 {
    match b.to_ascii_uppercase() {
        b'A' => id::A,
        b'C' => id::C,
        b'G' => id::G,
        b'T' => id::T,
        b'N' => id::N,
        _ => id::UNK,
    }
}

/// Tokenizes `seq` one byte per token, with no special tokens: row `i` of
/// any per-position output is byte `i` of the input.
///
/// ```
/// use strand_core::tokenizer::encode_bases;
/// assert_eq!(encode_bases(b"ACgtNR"), vec![7, 8, 9, 10, 11, 6]);
/// ```
pub fn encode_bases(seq: &[u8]) -> Vec<u32> {
    seq.iter().map(|&b| base_id(b)).collect()
}

/// Tokenizes `text` exactly as the reference tokenizer's default call does:
/// literal special-token strings become one token, other bytes are mapped
/// by [`base_id`], and one `[SEP]` is appended.
///
/// ```
/// use strand_core::tokenizer::encode_with_specials;
/// assert_eq!(encode_with_specials(b"AC GT"), vec![7, 8, 6, 9, 10, 1]);
/// assert_eq!(encode_with_specials(b""), vec![1]);
/// ```
pub fn encode_with_specials(text: &[u8]) -> Vec<u32> {
    let mut ids = Vec::with_capacity(text.len() + 1);
    let mut i = 0;
    while i < text.len() {
        if text[i] == b'[' {
            if let Some((s, tok)) = SPECIAL_STRINGS
                .iter()
                .find(|(s, _)| text[i..].starts_with(s))
            {
                ids.push(*tok);
                i += s.len();
                continue;
            }
        }
        ids.push(base_id(text[i]));
        i += 1;
    }
    ids.push(id::SEP);
    ids
}

/// Reverse complement of a sequence string as the reference dataloaders
/// build it: A<->T and C<->G swapped with case kept, every other byte kept.
pub fn reverse_complement(seq: &[u8]) -> Vec<u8> {
    seq.iter()
        .rev()
        .map(|&b| match b {
            b'A' => b'T',
            b'T' => b'A',
            b'C' => b'G',
            b'G' => b'C',
            b'a' => b't',
            b't' => b'a',
            b'c' => b'g',
            b'g' => b'c',
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iupac_and_case() {
        assert_eq!(encode_bases(b"acgtn"), vec![7, 8, 9, 10, 11]);
        assert_eq!(encode_bases(b"RYWSKMU-."), vec![id::UNK; 9]);
    }

    #[test]
    fn literal_special_tokens() {
        assert_eq!(encode_with_specials(b"A[MASK]C"), vec![7, 3, 8, 1]);
        // case-sensitive, and an unfinished bracket is just an unknown byte
        assert_eq!(encode_with_specials(b"[mask]"), vec![6, 6, 7, 6, 6, 6, 1]);
        assert_eq!(encode_with_specials(b"[SE"), vec![6, 6, 6, 1]);
    }

    #[test]
    fn revcomp_keeps_case_and_others() {
        assert_eq!(reverse_complement(b"ACgtNR"), b"RNacGT".to_vec());
    }
}
