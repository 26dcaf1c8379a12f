//! From sequence records to what the classification head sees: checked
//! records, their mean-pooled views, and the head's logits.

use anyhow::{Context, Result};
use indicatif::ProgressBar;
use strand_core::{heads, tokenizer, Model, Out};
use strand_io::{Error as IoError, IdSet, Reader, Record};

use super::labels::Labels;

/// Calls `f(number, record)` for every record of `reader`, with `number`
/// 1-based. Ids must be unique; records given to `f` are non-empty ASCII.
pub fn each_record(reader: Reader, mut f: impl FnMut(u64, Record) -> Result<()>) -> Result<()> {
    let file = reader.display_name().to_string();
    let mut ids = IdSet::new(file.clone());
    for (i, rec) in reader.enumerate() {
        let rec = rec?;
        let n = i as u64 + 1;
        ids.insert(&rec.id, n)?;
        rec.check_model_input(&file, n)?;
        f(n, rec)?;
    }
    Ok(())
}

/// What the head sees of one record: mean-pooled `d_model`-wide views
/// (`strand_core::heads::pooled_views`). A PS model gives two (forward strand and
/// channel-reversed reverse-complement strand); a PH model one, or with
/// `--conjoin` two (the record and its reverse complement, each run
/// through the model). With `--layer`, each view holds the pooled views of
/// the layers one after the other (`heads::pooled_layer_views`).
pub type Views = Vec<Vec<f32>>;

/// Runs records through a model.
pub struct Embedder<'a> {
    pub model: &'a Model,
    /// Append `[SEP]` as the reference tokenizer does by default.
    pub special_tokens: bool,
    /// PH only: also run the reverse complement (a PS model's two views
    /// already cover both strands, so it changes nothing there).
    pub conjoin: bool,
    /// The layers whose states are pooled, in order (`--layer`, or the
    /// head's `strand_head_layers`); `None`: the final hidden states.
    pub layers: Option<Vec<usize>>,
}

/// The layers a classification checkpoint's head reads, as
/// [`Embedder::layers`] takes them: `None` for the final layer alone.
pub fn head_layers(model: &Model) -> Option<Vec<usize>> {
    let l = &model.config.head_layers;
    (!l.is_empty() && l[..] != [model.config.n_layer]).then(|| l.clone())
}

impl Embedder<'_> {
    fn tokens(&self, seq: &[u8]) -> Vec<u32> {
        if self.special_tokens {
            tokenizer::encode_with_specials(seq)
        } else {
            tokenizer::encode_bases(seq)
        }
    }

    /// The views of one sequence's bases.
    fn pooled(&self, seq: &[u8]) -> strand_core::Result<Views> {
        let (m, ids) = (self.model, self.tokens(seq));
        Ok(match &self.layers {
            None => heads::pooled_views(&m.config, &m.forward(&ids)?),
            Some(layers) => {
                let hidden = m.forward_layers(&ids, layers)?;
                let refs: Vec<&[f32]> = hidden.iter().map(Vec::as_slice).collect();
                heads::pooled_layer_views(&m.config, &refs)
            }
        })
    }

    /// The views of record `n` of `file`.
    pub fn views(&self, file: &str, n: u64, rec: &Record) -> Result<Views> {
        let at = || format!("{file}: record {n} ({})", strand_io::error::Name(&rec.id));
        let mut views = self.pooled(&rec.seq).with_context(at)?;
        if self.conjoin && !self.model.config.rcps {
            // As the reference dataloader: reverse-complement the string
            // (case and other letters kept), then tokenize it.
            let rc = tokenizer::reverse_complement(&rec.seq);
            views.extend(self.pooled(&rc).with_context(at)?);
        }
        Ok(views)
    }

    /// The views of several records of equal length, in one batched pass
    /// per strand where the device batches (the GPU); the same numbers as
    /// [`Embedder::views`] on each, within float tolerance. `recs` holds
    /// `(number, record)` pairs of `file`.
    pub fn views_batch(&self, file: &str, recs: &[(u64, Record)]) -> Result<Vec<Views>> {
        if recs.len() == 1 {
            let (n, rec) = &recs[0];
            return Ok(vec![self.views(file, *n, rec)?]);
        }
        let m = self.model;
        let at = || {
            let (first, last) = (&recs[0], &recs[recs.len() - 1]);
            format!(
                "{file}: records {}-{} (\"{}\" to \"{}\")",
                first.0, last.0, first.1.id, last.1.id
            )
        };
        let run = |seqs: Vec<Vec<u8>>| -> Result<Vec<Views>> {
            let ids: Vec<Vec<u32>> = seqs.iter().map(|s| self.tokens(s)).collect();
            let refs: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
            let mut hidden = strand_core::HostBuffer::transient();
            let per_seq = refs[0].len() * m.width();
            let Some(layers) = &self.layers else {
                m.run(&refs, Out::Host(&mut hidden)).with_context(at)?;
                return Ok(hidden
                    .chunks_exact(per_seq)
                    .map(|h| heads::pooled_views(&m.config, h))
                    .collect());
            };
            m.run(&refs, Out::Layers(layers, &mut hidden))
                .with_context(at)?;
            // Layer j of sequence i at (j * nseq + i) * per_seq.
            let slab = refs.len() * per_seq;
            Ok((0..refs.len())
                .map(|i| {
                    let of_layers: Vec<&[f32]> = (0..layers.len())
                        .map(|j| &hidden[j * slab + i * per_seq..j * slab + (i + 1) * per_seq])
                        .collect();
                    heads::pooled_layer_views(&m.config, &of_layers)
                })
                .collect())
        };
        let mut views = run(recs.iter().map(|(_, r)| r.seq.clone()).collect())?;
        if self.conjoin && !m.config.rcps {
            let rc = run(recs
                .iter()
                .map(|(_, r)| tokenizer::reverse_complement(&r.seq))
                .collect())?;
            for (v, r) in views.iter_mut().zip(rc) {
                v.extend(r);
            }
        }
        Ok(views)
    }
}

/// A labelled record, run through the model.
pub struct Sample {
    /// 1-based record number in its file (for messages).
    pub n: u64,
    pub id: String,
    pub len: usize,
    pub label: String,
    pub views: Views,
}

/// Every record of `reader` with its label, run through `emb`. A record
/// without a label fails before its forward pass.
pub fn embed_labelled(
    reader: Reader,
    labels: &Labels,
    emb: &Embedder,
    bar: &ProgressBar,
) -> Result<Vec<Sample>> {
    let file = reader.display_name().to_string();
    let mut out = Vec::new();
    each_record(reader, |n, rec| {
        let label = labels
            .of(&rec)
            .map_err(|msg| IoError::invalid_record(file.clone(), n, rec.id.clone(), msg))?;
        let views = emb.views(&file, n, &rec)?;
        bar.inc(rec.seq.len() as u64);
        out.push(Sample {
            n,
            id: rec.id,
            len: rec.seq.len(),
            label,
            views,
        });
        Ok(())
    })?;
    Ok(out)
}

/// The logits `head` gives for `views`: the classification head on each
/// view, averaged (PS strands, or for PH `--conjoin` the record and its
/// reverse complement, as the reference's conjoin mode computes them);
/// bit for bit what `Model::class_logits` gives on the record's hidden
/// states.
pub fn head_logits(head: &Model, views: &Views) -> Result<Vec<f32>> {
    Ok(heads::class_logits(&head.config, head.class_head()?, views))
}

/// The head's logits for each of a batch of equal-length records of
/// `file` (`(number, record)` pairs), from one batched pass per strand.
pub fn batch_logits(emb: &Embedder, file: &str, batch: &[(u64, Record)]) -> Result<Vec<Vec<f32>>> {
    emb.views_batch(file, batch)?
        .iter()
        .map(|v| head_logits(emb.model, v))
        .collect()
}

/// The strand-symmetric pooled embedding the head is trained on: the mean
/// of the views, in f64. A bias-free head `W` gives exactly
/// `W mean(views) = mean(W view)`, which is what [`head_logits`] computes.
pub fn feature(views: &Views) -> Vec<f64> {
    let n = views.len() as f64;
    let mut x = vec![0.0f64; views[0].len()];
    for v in views {
        x.iter_mut().zip(v).for_each(|(s, &e)| *s += e as f64);
    }
    x.iter_mut().for_each(|s| *s /= n);
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `predict` on two engines (two CPU models standing in for two GPUs)
    /// writes what one engine writes, in input order.
    #[test]
    fn batches_spread_over_engines_come_back_in_order() {
        use strand_core::runner::{map_ordered, runs};
        let models = crate::test_models::cpu_models("ps-tiny-cls", 2);
        let emb = |model| Embedder {
            model,
            special_tokens: true,
            conjoin: false,
            layers: None,
        };
        let recs: Vec<(u64, Record)> = (0..9u64)
            .map(|k| {
                let len = 20 + 10 * (k as usize / 3);
                let seq = (0..len)
                    .map(|i| b"ACGT"[(i * i + k as usize) % 4])
                    .collect();
                let rec = Record {
                    id: format!("r{k}"),
                    description: None,
                    seq,
                };
                (k + 1, rec)
            })
            .collect();
        let lens: Vec<usize> = recs.iter().map(|(_, r)| r.seq.len()).collect();
        let run = |engines: &[Embedder]| {
            let mut out = Vec::new();
            let units = runs(&lens, 60).into_iter().map(Ok);
            map_ordered(
                engines,
                units,
                |e, unit| batch_logits(e, "test.fa", &recs[unit]),
                |l| {
                    out.extend(l);
                    anyhow::Ok(())
                },
            )
            .unwrap();
            out
        };
        let one = run(&[emb(&models[0])]);
        let two = run(&[emb(&models[0]), emb(&models[1])]);
        assert_eq!(one.len(), 9);
        assert_eq!(one, two);
        assert_ne!(one[0], one[1]);
    }

    #[test]
    fn feature_is_the_mean_view() {
        let views = vec![vec![1.0f32, 2.0], vec![3.0, 6.0]];
        assert_eq!(feature(&views), [2.0, 4.0]);
    }
}
