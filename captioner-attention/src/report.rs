//! One self-contained HTML page: every image (embedded) with its caption, and hovering
//! or tapping a word draws that word's heatmap over the image. No network, no files
//! beside it: it opens from the file system.

use std::io::Cursor;

use image::{codecs::jpeg::JpegEncoder, imageops::FilterType, DynamicImage};
use serde_json::json;

use captioner::Result;
use captioner::WordMaps;

/// The longest side of an embedded image.
const SHOWN: u32 = 384;

/// The page's images and maps, added one image at a time.
#[derive(Default)]
pub struct Report {
    items: Vec<String>,
    maps: Vec<serde_json::Value>,
}

impl Report {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Adds an image (`file` names it) with its caption's words and maps.
    pub fn add(
        &mut self,
        file: &str,
        image: &DynamicImage,
        caption: &str,
        maps: &WordMaps,
    ) -> Result<()> {
        let i = self.items.len();
        let words: String = maps
            .words
            .iter()
            .enumerate()
            .map(|(w, word)| {
                format!(
                    r#"<span class="word" tabindex="0" data-item="{i}" data-word="{w}">{}</span>"#,
                    escape(&word.word)
                )
            })
            .collect::<Vec<_>>()
            .join(" ");
        self.items.push(format!(
            r#"<figure class="item" id="item-{i}"><div class="view"><img src="data:image/jpeg;base64,{}" alt="{}"><canvas></canvas></div><figcaption><p class="caption" title="{}">{words}</p><p class="file">{}</p></figcaption></figure>"#,
            base64(&thumbnail_jpeg(image)?),
            escape(file),
            escape(caption),
            escape(file),
        ));
        self.maps.push(json!({
            "rows": maps.rows,
            "cols": maps.cols,
            "words": maps.words.iter().map(|w| &w.weights).collect::<Vec<_>>(),
        }));
        Ok(())
    }

    /// The page.
    pub fn html(&self, title: &str) -> String {
        let maps = serde_json::to_string(&self.maps).expect("plain numbers");
        format!(
            "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body data-shown=\"\">\n<h1>{title}</h1>\n<p class=\"help\">Hover over a word, or tap it, to see where the decoder looked while writing it (the mean attention of the chosen layers and heads, red where it is highest). Tap again to let go.</p>\n<main>\n{}\n</main>\n<script>\nconst MAPS = {};\n{SCRIPT}</script>\n</body>\n</html>\n",
            self.items.join("\n"),
            // Inside a script element, "</" would end it early.
            maps.replace("</", "<\\/"),
            title = escape(title),
        )
    }
}

const STYLE: &str =
    "body{font-family:system-ui,sans-serif;margin:16px;background:#f6f6f6;color:#222}\
main{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}\
.item{margin:0;padding:8px;background:#fff;border:1px solid #ddd;border-radius:6px;width:320px}\
.view{position:relative;display:inline-block;line-height:0}\
.view img{width:320px;height:auto}\
.view canvas{position:absolute;left:0;top:0;width:100%;height:100%;pointer-events:none}\
.caption{font-size:18px;margin:8px 0 4px}\
.word{cursor:pointer;padding:1px 2px;border-radius:3px}\
.word:hover,.word.on{background:#ffd54a}\
.file{color:#777;font-size:12px;margin:0}.help{color:#555}";

/// Draws a word's grid, coloured as the PNG sheets colour it, onto the image's canvas;
/// the browser's smoothing upsamples it. The shown word is kept in `body[data-shown]`
/// as "item:word".
const SCRIPT: &str = r#"function jet(v) {
  const c = (x) => Math.round(Math.min(1, Math.max(0, 1.5 - Math.abs(4 * v - x))) * 255);
  return [c(3), c(2), c(1)];
}
let pinned = null;
function show(i, w) {
  document.querySelectorAll('.word.on').forEach((e) => e.classList.remove('on'));
  document.querySelectorAll('.view canvas').forEach((c) => c.getContext('2d').clearRect(0, 0, c.width, c.height));
  if (i === null) { document.body.dataset.shown = ''; return; }
  const item = document.getElementById('item-' + i);
  const img = item.querySelector('img');
  const canvas = item.querySelector('canvas');
  canvas.width = img.naturalWidth || img.width;
  canvas.height = img.naturalHeight || img.height;
  const m = MAPS[i], g = m.words[w];
  const top = Math.max(...g) || 1;
  const grid = document.createElement('canvas');
  grid.width = m.cols; grid.height = m.rows;
  const gctx = grid.getContext('2d');
  const px = gctx.createImageData(m.cols, m.rows);
  g.forEach((x, k) => {
    const v = x / top, [r, gr, b] = jet(v);
    px.data.set([r, gr, b, Math.round(191 * v)], 4 * k);
  });
  gctx.putImageData(px, 0, 0);
  const ctx = canvas.getContext('2d');
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(grid, 0, 0, canvas.width, canvas.height);
  item.querySelector('[data-word="' + w + '"]').classList.add('on');
  document.body.dataset.shown = i + ':' + w;
}
document.querySelectorAll('.word').forEach((e) => {
  const i = +e.dataset.item, w = +e.dataset.word;
  e.addEventListener('mouseenter', () => { if (pinned === null) show(i, w); });
  e.addEventListener('mouseleave', () => { if (pinned === null) show(null); });
  e.addEventListener('focus', () => { if (pinned === null) show(i, w); });
  e.addEventListener('click', () => {
    const key = i + ':' + w;
    pinned = pinned === key ? null : key;
    if (pinned === null) show(null); else show(i, w);
  });
});
"#;

/// The image scaled to fit `SHOWN`, as a JPEG.
fn thumbnail_jpeg(image: &DynamicImage) -> Result<Vec<u8>> {
    let rgb = if image.width().max(image.height()) > SHOWN {
        image.resize(SHOWN, SHOWN, FilterType::Triangle).to_rgb8()
    } else {
        image.to_rgb8()
    };
    let mut bytes = Vec::new();
    JpegEncoder::new_with_quality(Cursor::new(&mut bytes), 90)
        .encode_image(&rgb)
        .map_err(|e| captioner::Error::Other(format!("encoding a JPEG: {e}")))?;
    Ok(bytes)
}

/// Text safe inside HTML elements and attribute values.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_examples() {
        // RFC 4648, section 10.
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), coded);
        }
    }

    #[test]
    fn words_and_names_are_escaped() {
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
