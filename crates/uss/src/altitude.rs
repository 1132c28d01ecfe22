//! What an operator's altitudes are measured from, and their conversion to the wire's.
//!
//! The standard's wire carries heights above the WGS84 ellipsoid (`W84`), what GNSS receivers
//! report. People think in heights above mean sea level (`MSL`) or above the ground, and the
//! difference is not small: at 47° N 8° E the geoid (mean sea level) lies about 48 m above the
//! ellipsoid, and the ground several hundred metres above that. A flight file therefore says
//! which it means (`altitude_reference`), and `MSL` is converted here with the EGM96 geoid
//! (NGA's 1996 model, evaluated from its spherical-harmonic coefficients compiled into the
//! binary). Heights above ground (`AGL`) need terrain data this system does not ship, and are
//! refused with that reason.

use serde::{Deserialize, Serialize};

/// The reference of a flight file's altitudes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AltitudeReference {
    /// Above the WGS84 ellipsoid: the wire's own, used as given.
    W84,
    /// Above mean sea level (the EGM96 geoid).
    #[serde(rename = "MSL")]
    Msl,
}

/// Why a flight file's `altitude_reference` is needed, for the error that asks for it.
pub const EXPLANATION: &str = "say what the altitudes are measured from: `W84` (above the WGS84 \
    ellipsoid, what GNSS reports and the standard carries) or `MSL` (above mean sea level; \
    converted with the EGM96 geoid, which is about 48 m above the ellipsoid at 47 N 8 E). Heights \
    above ground (`AGL`) need terrain data this system does not ship: convert them to MSL first";

/// Parses a reference as a flight file spells it.
pub fn parse(text: &str) -> Result<AltitudeReference, String> {
    match text.trim().to_ascii_uppercase().as_str() {
        "W84" | "WGS84" => Ok(AltitudeReference::W84),
        "MSL" | "EGM96" => Ok(AltitudeReference::Msl),
        "AGL" | "SFC" => Err(format!(
            "`{text}` (above ground) is not supported: it needs terrain data this system does not ship; \
             give the heights above mean sea level (`MSL`) or the WGS84 ellipsoid (`W84`)"
        )),
        _ => Err(format!("`{text}` is not a reference this system knows: {EXPLANATION}")),
    }
}

/// Height of the EGM96 geoid above the WGS84 ellipsoid at a point, in metres.
pub fn geoid_height_m(lat: f64, lng: f64) -> f64 {
    egm96::egm96_compute_altitude_offset(lat, lng)
}

/// Margin added on each side of a converted band: the geoid is evaluated at sample points of
/// the footprint (its corners, edge midpoints and centre), and between them it can bend a
/// little further (its shortest wavelengths are about 100 km; over a footprint of a few
/// kilometres the departure from the samples stays well below this).
pub const SAMPLING_MARGIN_M: f64 = 0.5;

/// The WGS84 band that covers an MSL band everywhere over a footprint whose bounding box is
/// `(min_lng, min_lat, max_lng, max_lat)`: the lowest geoid height under the lower bound, the
/// highest under the upper one, each widened by [`SAMPLING_MARGIN_M`].
pub fn msl_band_to_w84(lower_m: f64, upper_m: f64, bbox: (f64, f64, f64, f64)) -> (f64, f64) {
    let (x0, y0, x1, y1) = bbox;
    let (xm, ym) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
    let samples = [(y0, x0), (y0, xm), (y0, x1), (ym, x0), (ym, xm), (ym, x1), (y1, x0), (y1, xm), (y1, x1)];
    let heights: Vec<f64> = samples.iter().map(|(lat, lng)| geoid_height_m(*lat, *lng)).collect();
    let lowest = heights.iter().copied().fold(f64::INFINITY, f64::min);
    let highest = heights.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lower_m + lowest - SAMPLING_MARGIN_M, upper_m + highest + SAMPLING_MARGIN_M)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NGA's published check values for EGM96 (the test points distributed with its F477
    /// program: latitude, longitude east, geoid height in metres).
    const NGA_CHECKS: [(f64, f64, f64); 6] = [
        (38.6281550, 269.7791550, -31.628),
        (-14.6212170, 305.0211140, -2.969),
        (46.8743190, 102.4487290, -43.575),
        (-23.6174460, 133.8747120, 15.871),
        (38.6254730, 359.9995000, 50.066),
        (-0.4667440, 0.0023000, 17.329),
    ];

    #[test]
    fn geoid_heights_match_the_published_check_values() {
        for (lat, lng, expected) in NGA_CHECKS {
            let lng = if lng > 180.0 { lng - 360.0 } else { lng };
            let got = geoid_height_m(lat, lng);
            assert!((got - expected).abs() < 0.01, "({lat}, {lng}): {got} vs {expected}");
        }
        // The example: near 47 N 8 E the geoid is about 48 m above the ellipsoid.
        let zurich = geoid_height_m(47.0, 8.0);
        assert!((47.0..50.0).contains(&zurich), "{zurich}");
    }

    #[test]
    fn msl_bands_become_w84_bands_that_cover_them() {
        let (lo, hi) = msl_band_to_w84(0.0, 120.0, (7.99, 46.99, 8.01, 47.01));
        let n = geoid_height_m(47.0, 8.0);
        assert!(lo < n && lo > n - 2.0, "{lo} vs {n}");
        assert!(hi > 120.0 + n && hi < 122.0 + n, "{hi} vs {n}");
    }

    /// The claim of `msl_band_to_w84`: at every point of the footprint's box, the W84 band
    /// holds the MSL band moved by the geoid height there. Checked on a 21 x 21 grid of boxes
    /// of a few kilometres where the geoid is flat, and where it is among the steepest (the
    /// Puerto Rico trench, the Himalaya's south face).
    #[test]
    fn converted_bands_cover_the_msl_band_everywhere_in_the_footprint() {
        let boxes = [(7.95, 46.95, 8.05, 47.05), (-66.6, 19.2, -66.5, 19.3), (85.0, 27.9, 85.1, 28.0)];
        let mut checked = 0;
        for (x0, y0, x1, y1) in boxes {
            let (lo, hi) = msl_band_to_w84(0.0, 120.0, (x0, y0, x1, y1));
            for i in 0..=20 {
                for j in 0..=20 {
                    let (lng, lat) = (x0 + (x1 - x0) * i as f64 / 20.0, y0 + (y1 - y0) * j as f64 / 20.0);
                    let n = geoid_height_m(lat, lng);
                    assert!(lo <= n && hi >= 120.0 + n, "({lat}, {lng}): {n} not covered by {lo}..{hi}");
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 3 * 21 * 21);
    }

    #[test]
    fn references_are_parsed_or_refused_with_the_reason() {
        assert_eq!(parse("W84"), Ok(AltitudeReference::W84));
        assert_eq!(parse("msl"), Ok(AltitudeReference::Msl));
        let agl = parse("AGL").expect_err("AGL refused");
        assert!(agl.contains("terrain data"), "{agl}");
        let other = parse("feet").expect_err("unknown refused");
        assert!(other.contains("W84") && other.contains("MSL"), "{other}");
    }
}
