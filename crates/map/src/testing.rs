//! For tests (feature `testing`): a tiny but real raster tile archive to serve as a basemap.

use pmtiles::{Compression, PmTilesWriter, TileCoord, TileType};

/// A 1x1 PNG of one opaque green pixel (#3c8c3c): the smallest real image a tile can be;
/// MapLibre stretches it over the whole tile.
pub const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x02, 0x00, 0x00, 0x00, 0x90, 0x77, 0x53, 0xde, 0x00, 0x00, 0x00, 0x0c, 0x49,
    0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xb0, 0xe9, 0xb1, 0x01, 0x00, 0x02, 0x0c, 0x01, 0x05, 0xd2, 0xe0, 0x50, 0xa2,
    0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// Writes a PMTiles archive of [`PNG`] tiles at zoom 0 (the whole world) and at zoom 1, x 1,
/// y 0 (the north-east quarter); MapLibre scales them to every deeper zoom.
///
/// # Panics
/// When the file cannot be written (a test's temporary directory).
pub fn write_raster_archive(path: &std::path::Path) {
    let file = std::fs::File::create(path).expect("create the test archive");
    let mut w = PmTilesWriter::new(TileType::Png)
        .tile_compression(Compression::None)
        .min_zoom(0)
        .max_zoom(1)
        .create(file)
        .expect("start the test archive");
    for (z, x, y) in [(0, 0, 0), (1, 1, 0)] {
        w.add_tile(TileCoord::new(z, x, y).expect("a tile of the pyramid"), PNG).expect("write a tile");
    }
    w.finalize().expect("finish the test archive");
}
