//! Uncompressed TIFFs as Pillow reads them: not through libtiff but with its own raw
//! decoder (ImageFile.load + RawDecode.c), tile by tile. Each tile's rows are read from
//! its offset onwards, StripByteCounts ignored, `stride` bytes apart when the tile
//! sticks out past the right edge; data ending before the last row refuses the file
//! ("image file is truncated"). Planar files are read one raw-mode character per plane
//! (see `setup`), which is how Pillow decodes 16-bit planar RGB as 8-bit samples.

use super::setup::Tile;
use super::unpack::{self, Canvas, Mode};

pub(super) fn decode(
    data: &[u8],
    mode: Mode,
    width: u32,
    height: u32,
    tiles: &[Tile],
) -> Result<Canvas, String> {
    let mut canvas = Canvas::new(mode, width as usize, height as usize);
    for tile in tiles {
        let unpacker = unpack::find(mode, &tile.rawmode)
            .ok_or_else(|| format!("unknown raw mode {} for mode {mode:?}", tile.rawmode))?;
        let (x, y) = (tile.x0 as usize, tile.y0 as usize);
        let pixels = tile.x1.saturating_sub(tile.x0) as usize;
        let rows = tile.y1.saturating_sub(tile.y0) as usize;
        if pixels == 0 || rows == 0 {
            return Err("tile cannot extend outside image".into());
        }
        let row_bytes = unpacker.row_bytes(pixels);
        let skip = if tile.stride == 0 {
            0
        } else {
            usize::try_from(tile.stride - row_bytes as i128)
                .map_err(|_| "tile stride shorter than its rows".to_string())?
        };
        let truncated = || "image file is truncated".to_string();
        let mut at = usize::try_from(tile.offset).map_err(|_| "negative tile offset")?;
        for row in 0..rows {
            if row > 0 {
                at = at.checked_add(skip).ok_or_else(truncated)?;
            }
            let end = at.checked_add(row_bytes).ok_or_else(truncated)?;
            let input = data.get(at..end).ok_or_else(truncated)?;
            canvas.unpack_row(&unpacker, (x, y + row), input, pixels)?;
            at = end;
        }
    }
    Ok(canvas)
}
