//! The confusion matrix as a PNG heat map.
//!
//! Drawn with plotters' bitmap backend into memory and encoded with `png`,
//! so the file is written atomically like every other output. Text uses
//! the public-domain 8x8 bitmap font of `font8x8`, drawn pixel by pixel:
//! plotters' own text needs a TrueType font from the system (fontconfig)
//! or shipped with the binary, and a confusion matrix needs only ASCII.

use std::io::Write;

use anyhow::{Context, Result};
use font8x8::legacy::BASIC_LEGACY;
use plotters::coord::Shift;
use plotters::prelude::*;
use strand_io::AtomicFile;

/// Glyph size in pixels at scale 1.
const GLYPH: i32 = 8;
/// Labels longer than this are cut (with a trailing `~`).
const MAX_LABEL: usize = 20;

/// Cells shade from white (no records) to this blue (every record of the
/// row), by the fraction of the row's records in the cell (the recall of
/// the diagonal).
const FULL: (u8, u8, u8) = (8, 64, 129);

/// Writes a heat map of `confusion[true][predicted]` to `out`, leaving
/// the commit to the caller (with its other outputs).
pub fn confusion_png(
    mut out: AtomicFile,
    labels: &[String],
    confusion: &[Vec<u64>],
    title: &str,
) -> Result<AtomicFile> {
    let png = render(labels, confusion, title)?;
    out.write_all(&png).map_err(|e| out.write_error(e))?;
    Ok(out)
}

/// The PNG bytes.
fn render(labels: &[String], confusion: &[Vec<u64>], title: &str) -> Result<Vec<u8>> {
    let k = labels.len() as i32;
    let short: Vec<String> = labels.iter().map(|l| shorten(l)).collect();
    let longest = short.iter().map(|l| l.len()).max().unwrap_or(1) as i32;
    let biggest = confusion.iter().flatten().max().copied().unwrap_or(0);
    let digits = biggest.to_string().len() as i32;
    let s = 2; // text scale: 16-pixel glyphs
    let cell = (GLYPH * s * digits + 24).max(56);
    let pad = 16;
    let left = pad + GLYPH * s * longest + 12;
    let title_h = GLYPH * s + 12;
    let top = pad + title_h + GLYPH * s * longest + 12;
    let legend = "rows: true label, columns: predicted";
    let widest_text = title.len().max(legend.len()) as i32;
    let width = (left + k * cell + pad).max(pad * 2 + GLYPH * s * widest_text);
    let height = top + k * cell + 8 + GLYPH * s + pad;

    let mut rgb = vec![0u8; (width * height * 3) as usize];
    {
        let area =
            BitMapBackend::with_buffer(&mut rgb, (width as u32, height as u32)).into_drawing_area();
        area.fill(&WHITE).map_err(draw_error)?;
        text(&area, pad, pad, title, s, BLACK, false)?;
        for (t, row) in confusion.iter().enumerate() {
            let total: u64 = row.iter().sum();
            for (p, &count) in row.iter().enumerate() {
                let frac = if total == 0 {
                    0.0
                } else {
                    count as f64 / total as f64
                };
                let mix = |full: u8| (255.0 + (full as f64 - 255.0) * frac).round() as u8;
                let fill = RGBColor(mix(FULL.0), mix(FULL.1), mix(FULL.2));
                let (x, y) = (left + p as i32 * cell, top + t as i32 * cell);
                area.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    fill.filled(),
                ))
                .map_err(draw_error)?;
                area.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    RGBColor(160, 160, 160),
                ))
                .map_err(draw_error)?;
                let label = count.to_string();
                let ink = if frac > 0.5 { WHITE } else { BLACK };
                let tw = GLYPH * s * label.len() as i32;
                text(
                    &area,
                    x + (cell - tw) / 2,
                    y + (cell - GLYPH * s) / 2,
                    &label,
                    s,
                    ink,
                    false,
                )?;
            }
        }
        for (i, l) in short.iter().enumerate() {
            // True labels right-aligned left of their row; predicted labels
            // written upwards above their column.
            let y = top + i as i32 * cell + (cell - GLYPH * s) / 2;
            text(
                &area,
                left - 8 - GLYPH * s * l.len() as i32,
                y,
                l,
                s,
                BLACK,
                false,
            )?;
            let x = left + i as i32 * cell + (cell - GLYPH * s) / 2;
            text(&area, x, top - 8, l, s, BLACK, true)?;
        }
        text(
            &area,
            pad,
            top + k * cell + 8,
            legend,
            s,
            RGBColor(90, 90, 90),
            false,
        )?;
        area.present().map_err(draw_error)?;
    }

    let mut png = Vec::new();
    let mut enc = png::Encoder::new(&mut png, width as u32, height as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().context("encoding the plot as PNG")?;
    writer
        .write_image_data(&rgb)
        .context("encoding the plot as PNG")?;
    writer.finish().context("encoding the plot as PNG")?;
    Ok(png)
}

/// At most [`MAX_LABEL`] ASCII characters (others shown as `?`).
fn shorten(label: &str) -> String {
    let ascii: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if ascii.len() <= MAX_LABEL {
        ascii
    } else {
        format!("{}~", &ascii[..MAX_LABEL - 1])
    }
}

/// Draws ASCII `s` with its top-left corner at `(x, y)`, each font pixel a
/// `scale x scale` square; `upwards` rotates it a quarter turn
/// anticlockwise, starting at `(x, y)` as the bottom-left corner.
fn text(
    area: &DrawingArea<BitMapBackend, Shift>,
    x: i32,
    y: i32,
    s: &str,
    scale: i32,
    color: RGBColor,
    upwards: bool,
) -> Result<()> {
    for (i, ch) in s.bytes().enumerate() {
        let glyph = BASIC_LEGACY[usize::from(ch.min(127))];
        for (gy, bits) in glyph.iter().enumerate() {
            for gx in 0..8 {
                // font8x8 rows: bit 0 is the leftmost pixel.
                if bits & (1 << gx) == 0 {
                    continue;
                }
                let along = i as i32 * GLYPH + gx;
                let (px, py) = if upwards {
                    (x + gy as i32 * scale, y - (along + 1) * scale)
                } else {
                    (x + along * scale, y + gy as i32 * scale)
                };
                for dy in 0..scale {
                    for dx in 0..scale {
                        area.draw_pixel((px + dx, py + dy), &color)
                            .map_err(draw_error)?;
                    }
                }
            }
        }
    }
    Ok(())
}

fn draw_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the confusion plot: {e:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_decodable_png_with_ink_in_the_diagonal() {
        let labels = vec![
            "promoter".to_string(),
            "a-very-long-enhancer-label".to_string(),
        ];
        let png = render(&labels, &[vec![9, 1], vec![0, 10]], "test").unwrap();
        let dec = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = dec.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert!(info.width > 200 && info.height > 200);
        // Some pixels are the full shade (a row whose records are all in
        // one cell), some are white.
        let px: Vec<&[u8]> = buf.chunks_exact(3).collect();
        assert!(px.iter().any(|p| *p == [FULL.0, FULL.1, FULL.2]));
        assert!(px.iter().any(|p| *p == [255, 255, 255]));
    }

    #[test]
    fn long_labels_are_cut() {
        assert_eq!(shorten("abc"), "abc");
        assert_eq!(shorten(&"x".repeat(30)).len(), MAX_LABEL);
        assert_eq!(shorten("é"), "?");
    }
}
