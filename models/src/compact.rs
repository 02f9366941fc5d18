//! The compact encoder: static token embeddings (distilled from the pretrained
//! sentence encoder, see [`crate::distill`]) mean-pooled over the utterance's tokens,
//! read after long numbers are blanked and typing slips corrected ([`crate::spelling`]).
//!
//! It is a table lookup and an average, so it answers in microseconds on a head unit
//! and its whole table fits the 16 MB budget (f16).

use candle_core::{DType, Device, Tensor};
use tokenizers::Tokenizer;

use crate::encoder::{l2_normalise, SentenceEncoder};
use crate::error::{ModelError, Result};
use crate::spelling::Speller;

pub struct CompactEncoder {
    tokenizer: Tokenizer,
    /// `(vocab, dim)`, in the dtype it was stored in (f16 when shipped); rows are
    /// converted to f32 after the lookup, so the table stays half-size in memory.
    embeddings: Tensor,
    dim: usize,
    /// Corrects typing slips before tokenizing (knows no words by default).
    speller: Speller,
}

impl CompactEncoder {
    pub fn new(tokenizer: Tokenizer, embeddings: Tensor) -> Result<Self> {
        let (vocab, dim) = embeddings.dims2()?;
        let tokenizer_vocab = tokenizer.get_vocab_size(true);
        if tokenizer_vocab > vocab {
            return Err(ModelError::Input(format!(
                "the tokenizer has {tokenizer_vocab} tokens but the embedding table only {vocab} rows"
            )));
        }
        Ok(CompactEncoder {
            tokenizer,
            embeddings,
            dim,
            speller: Speller::default(),
        })
    }

    /// The same encoder, reading every utterance through `speller` first.
    pub fn with_speller(mut self, speller: Speller) -> Self {
        self.speller = speller;
        self
    }

    /// The utterance's token ids, without special tokens (they carry no meaning in a
    /// static bag of tokens), without long numbers ([`without_long_numbers`]) and
    /// with typing slips of known words corrected ([`Speller::correct`]).
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>> {
        let text = without_long_numbers(text);
        let encoding = self
            .tokenizer
            .encode(self.speller.correct(&text).as_ref(), false)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Mean of the token rows, L2-normalised. No tokens gives the zero vector.
    pub fn pool_ids(&self, ids: &[u32]) -> Result<Tensor> {
        if ids.is_empty() {
            return Ok(Tensor::zeros(self.dim, DType::F32, &Device::Cpu)?);
        }
        let index = Tensor::new(ids, &Device::Cpu)?;
        let rows = self.embeddings.index_select(&index, 0)?.to_dtype(DType::F32)?;
        l2_normalise(&rows.mean(0)?)
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn embeddings(&self) -> &Tensor {
        &self.embeddings
    }
}

/// Digits a number must have, spaces and dashes aside, to be left out.
const LONG_NUMBER_DIGITS: usize = 7;

/// `text` with every run of digits, spaces, dashes, dots, brackets and `+` that holds
/// at least [`LONG_NUMBER_DIGITS`] digits (a phone, card or account number) blanked.
/// Such numbers say nothing of what the driver wants, but in a bag of tokens their
/// many digit pieces outweigh the words around them. Shorter numbers (times, codes,
/// mileages, "i-95") are kept.
pub fn without_long_numbers(text: &str) -> std::borrow::Cow<'_, str> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut out: Option<String> = None;
    let mut copied_to = 0;
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].1.is_ascii_digit() {
            i += 1;
            continue;
        }
        // Extend over the number's characters, remembering the last digit.
        let (mut j, mut last_digit, mut digits) = (i, i, 0);
        while j < chars.len() && (chars[j].1.is_ascii_digit() || " -.()+".contains(chars[j].1)) {
            if chars[j].1.is_ascii_digit() {
                digits += 1;
                last_digit = j;
            }
            j += 1;
        }
        if digits >= LONG_NUMBER_DIGITS {
            let start = chars[i].0;
            let end = chars.get(last_digit + 1).map_or(text.len(), |c| c.0);
            let s = out.get_or_insert_with(String::new);
            s.push_str(&text[copied_to..start]);
            s.push(' ');
            copied_to = end;
        }
        i = last_digit + 1;
    }
    match out {
        None => std::borrow::Cow::Borrowed(text),
        Some(mut s) => {
            s.push_str(&text[copied_to..]);
            std::borrow::Cow::Owned(s)
        }
    }
}

impl SentenceEncoder for CompactEncoder {
    fn dim(&self) -> usize {
        self.dim
    }

    fn embed(&self, text: &str) -> Result<Tensor> {
        let ids = self.token_ids(text)?;
        self.pool_ids(&ids)
    }
}

#[cfg(test)]
mod tests {
    use super::without_long_numbers;

    #[test]
    fn long_numbers_are_blanked_and_short_ones_kept() {
        assert_eq!(
            without_long_numbers("send a tow truck, my card is 4111 1111 1111 1111"),
            "send a tow truck, my card is  "
        );
        assert_eq!(
            without_long_numbers("text me on 07700 900123 or 555-123-4567 please"),
            "text me on   or   please"
        );
        for kept in [
            "book for 3:30 on the 14th",
            "code p0420",
            "traffic on i-95",
            "the 30,000 mile service",
            "call 999",
        ] {
            assert_eq!(without_long_numbers(kept), kept);
        }
        assert_eq!(without_long_numbers("١٢٣٤٥٦٧٨ é 12345678"), "١٢٣٤٥٦٧٨ é  ");
    }
}
