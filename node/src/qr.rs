//! A text (an invite ticket) drawn as a QR code: for a terminal with Unicode half blocks, and as
//! an SVG document for the web app.
//!
//! Both use error-correction level M (15% of the code can be unreadable: glare on a screen, a
//! smudge). Give them a ticket from [`Ticket::encode_for_qr`](kith_protocol::ticket::Ticket::encode_for_qr):
//! upper-case base32 fits the QR alphanumeric mode, which makes a smaller code than the same
//! ticket in lower case.

use std::fmt::Write;

use qrcode::render::svg;
use qrcode::{Color, EcLevel, QrCode};

/// Modules of light margin around the terminal drawing. The standard asks for 4; phone scanners
/// read 2 fine, and a typical ticket's drawing stays 61 columns by 31 lines.
const TERMINAL_QUIET_ZONE: usize = 2;
/// Dark foreground on a light background from the 256-colour palette's colour cube (16 is
/// black, 231 white), which terminal themes leave alone, unlike the 16 basic colours.
const TERMINAL_COLOURS: &str = "\x1b[38;5;16;48;5;231m";
const TERMINAL_RESET: &str = "\x1b[0m";
/// Size of one module in the SVG's own units (pixels unless the page scales it).
const SVG_MODULE_SIZE: u32 = 8;

/// Why a text could not be drawn.
#[non_exhaustive]
#[derive(thiserror::Error, Debug)]
pub enum QrError {
    #[error("the text is {0} bytes long, too long for a QR code")]
    TooLong(usize),
}

fn code(text: &str) -> Result<QrCode, QrError> {
    // With the version left to qrcode, the only possible failure is data that no version holds.
    QrCode::with_error_correction_level(text, EcLevel::M).map_err(|_| QrError::TooLong(text.len()))
}

/// Draws `text` for a terminal with Unicode half blocks (two module rows per line): dark modules
/// on a light background, colours set explicitly with ANSI escapes, so the code scans the same
/// from a dark or a light terminal. A 2-module quiet zone surrounds it. Each line ends with a
/// colour reset and a newline.
pub fn terminal(text: &str) -> Result<String, QrError> {
    let code = code(text)?;
    let width = code.width();
    let modules = code.to_colors();
    let side = width + 2 * TERMINAL_QUIET_ZONE;
    // Dark module at (x, y) of the drawing, quiet zone included; light outside the code.
    let dark = |x: usize, y: usize| {
        let (Some(cx), Some(cy)) = (
            x.checked_sub(TERMINAL_QUIET_ZONE),
            y.checked_sub(TERMINAL_QUIET_ZONE),
        ) else {
            return false;
        };
        cx < width && cy < width && modules[cy * width + cx] == Color::Dark
    };
    let mut out = String::with_capacity((side + 20) * side.div_ceil(2) * 3);
    for y in (0..side).step_by(2) {
        out.push_str(TERMINAL_COLOURS);
        for x in 0..side {
            out.push(match (dark(x, y), dark(x, y + 1)) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        out.push_str(TERMINAL_RESET);
        out.push('\n');
    }
    Ok(out)
}

/// Draws `text` as a complete standalone SVG document: black modules on a white square with the
/// standard 4-module quiet zone, 8 units a module; it scales without blurring (`viewBox`,
/// `shape-rendering="crispEdges"`).
pub fn svg(text: &str) -> Result<String, QrError> {
    let code = code(text)?;
    let mut doc = code
        .render::<svg::Color>()
        .quiet_zone(true)
        .module_dimensions(SVG_MODULE_SIZE, SVG_MODULE_SIZE)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build();
    // qrcode ends the document without a trailing newline; files and HTTP bodies read better
    // with one.
    let _ = writeln!(doc);
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kith_protocol::keys::{DeviceId, FamilyId};
    use kith_protocol::membership::Role;
    use kith_protocol::ticket::{InviteId, MAX_ADDR_LEN, MAX_ADDRS, Ticket};

    /// A ticket as `kith invite` makes it: two 20-byte addresses (an IPv6 address and port).
    fn ticket(addrs: Vec<Vec<u8>>) -> Ticket {
        Ticket {
            family: FamilyId(*blake3::hash(b"family").as_bytes()),
            inviter: DeviceId(*blake3::hash(b"inviter").as_bytes()),
            addrs,
            invite: InviteId([0x5a; 16]),
            secret: *blake3::hash(b"secret").as_bytes(),
            role: Role::Relative,
            expires_at_ms: 1_760_000_000_000,
        }
    }

    fn typical_ticket() -> String {
        let addr = |n: u8| {
            let mut a = vec![0x29];
            a.extend_from_slice(&[0xfd, n, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
            a.extend_from_slice(&[0x06, 0x10, 0x92]);
            a
        };
        let text = ticket(vec![addr(1), addr(2)]).encode_for_qr();
        assert!(text.starts_with("KITH1"));
        text
    }

    fn largest_ticket() -> String {
        ticket(vec![vec![0xee; MAX_ADDR_LEN]; MAX_ADDRS]).encode_for_qr()
    }

    /// Modules (true = dark) of a square drawing.
    struct Matrix {
        side: usize,
        dark: Vec<bool>,
    }

    /// Reads the terminal drawing back into modules: escapes dropped, each character two rows.
    fn parse_terminal(drawing: &str) -> Matrix {
        let mut rows: Vec<Vec<bool>> = Vec::new();
        for line in drawing.lines() {
            assert!(line.starts_with(TERMINAL_COLOURS), "{line:?}");
            assert!(line.ends_with(TERMINAL_RESET), "{line:?}");
            let cells = &line[TERMINAL_COLOURS.len()..line.len() - TERMINAL_RESET.len()];
            let (mut top, mut bottom) = (Vec::new(), Vec::new());
            for c in cells.chars() {
                let (t, b) = match c {
                    '█' => (true, true),
                    '▀' => (true, false),
                    '▄' => (false, true),
                    ' ' => (false, false),
                    other => panic!("unexpected {other:?} in the drawing"),
                };
                top.push(t);
                bottom.push(b);
            }
            rows.push(top);
            rows.push(bottom);
        }
        let side = rows[0].len();
        // An odd number of module rows leaves a light half row at the bottom.
        assert_eq!(rows.len(), side + 1);
        assert!(rows.iter().all(|r| r.len() == side));
        assert!(rows[side].iter().all(|&d| !d));
        rows.truncate(side);
        Matrix {
            side,
            dark: rows.concat(),
        }
    }

    /// Reads the SVG back: the light square's size and the dark rectangles of its one path.
    fn parse_svg(doc: &str) -> (usize, Vec<bool>) {
        let attr = |name: &str| -> usize {
            let start = doc.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
            let len = doc[start..].find('"').unwrap();
            doc[start..start + len].parse().unwrap()
        };
        let (w, h) = (attr("width"), attr("height"));
        assert_eq!(w, h);
        let start = doc.find(" d=\"").unwrap() + 4;
        let path = &doc[start..start + doc[start..].find('"').unwrap()];
        let mut pixels = vec![false; w * h];
        for rect in path.split('M').filter(|r| !r.is_empty()) {
            // "{left} {top}h{width}v{height}H{left}V{top}"
            let nums: Vec<usize> = rect
                .split(|c: char| !c.is_ascii_digit())
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().unwrap())
                .collect();
            let [left, top, width, height, ..] = nums[..] else {
                panic!("unexpected path piece {rect:?}");
            };
            for y in top..top + height {
                for x in left..left + width {
                    pixels[y * w + x] = true;
                }
            }
        }
        (w, pixels)
    }

    /// Decodes the one QR code in a greyscale picture of `modules` (each `scale` pixels square)
    /// with `margin` pixels of `margin_dark` colour around it: the terminal's own background.
    fn scan(modules: &Matrix, scale: usize, margin: usize, margin_dark: bool) -> String {
        let side = modules.side * scale + 2 * margin;
        let mut img = rqrr::PreparedImage::prepare_from_greyscale(side, side, |x, y| {
            let inside = |v: usize| v >= margin && v < margin + modules.side * scale;
            let dark = if inside(x) && inside(y) {
                modules.dark[(y - margin) / scale * modules.side + (x - margin) / scale]
            } else {
                margin_dark
            };
            if dark { 0 } else { 255 }
        });
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1, "expected one QR code in the picture");
        let (meta, content) = grids[0].decode().expect("the code decodes");
        assert_eq!(meta.ecc_level, 0, "level M");
        content
    }

    #[test]
    fn terminal_drawing_scans_on_dark_and_light_terminals() {
        for text in [typical_ticket(), largest_ticket()] {
            let drawing = terminal(&text).unwrap();
            let modules = parse_terminal(&drawing);
            for margin_dark in [true, false] {
                assert_eq!(scan(&modules, 4, 40, margin_dark), text);
            }
        }
    }

    #[test]
    fn terminal_drawing_is_the_code_with_a_quiet_zone() {
        let text = typical_ticket();
        let code = QrCode::with_error_correction_level(&text, EcLevel::M).unwrap();
        let width = code.width();
        let modules = parse_terminal(&terminal(&text).unwrap());
        assert_eq!(modules.side, width + 4);
        let q = TERMINAL_QUIET_ZONE;
        for (i, &dark) in modules.dark.iter().enumerate() {
            let (x, y) = (i % modules.side, i / modules.side);
            let expected = (q..q + width).contains(&x)
                && (q..q + width).contains(&y)
                && code[(x - q, y - q)] == Color::Dark;
            assert_eq!(dark, expected, "module {x},{y}");
        }
        // A typical ticket fits an 80-column terminal.
        assert!(modules.side <= 80, "{}", modules.side);
        assert_eq!(drawing_lines(&text), modules.side.div_ceil(2));
    }

    fn drawing_lines(text: &str) -> usize {
        terminal(text).unwrap().lines().count()
    }

    #[test]
    fn rasterized_modules_scan() {
        for text in [typical_ticket(), largest_ticket()] {
            let code = QrCode::with_error_correction_level(&text, EcLevel::M).unwrap();
            let modules = Matrix {
                side: code.width(),
                dark: code
                    .to_colors()
                    .into_iter()
                    .map(|c| c == Color::Dark)
                    .collect(),
            };
            assert_eq!(scan(&modules, 3, 12, false), text);
        }
    }

    #[test]
    fn svg_is_a_standalone_document_that_scans() {
        let text = typical_ticket();
        let doc = svg(&text).unwrap();
        assert!(doc.starts_with("<?xml"));
        assert!(doc.contains(r#"<svg xmlns="http://www.w3.org/2000/svg""#));
        assert!(doc.contains("viewBox="));
        assert!(doc.trim_end().ends_with("</svg>"));
        let (side, pixels) = parse_svg(&doc);
        let modules = Matrix { side, dark: pixels };
        // Already 8 pixels a module with its own quiet zone; the page around it is white.
        assert_eq!(scan(&modules, 1, 0, false), text);
    }

    #[test]
    fn upper_case_ticket_makes_a_smaller_code() {
        let upper = typical_ticket();
        let lower = upper.to_ascii_lowercase();
        assert!(drawing_lines(&upper) < drawing_lines(&lower));
    }

    #[test]
    fn too_long_text_is_refused() {
        let text = "a".repeat(3000);
        let err = terminal(&text).unwrap_err();
        assert!(matches!(err, QrError::TooLong(3000)));
        assert_eq!(
            err.to_string(),
            "the text is 3000 bytes long, too long for a QR code"
        );
        assert!(matches!(svg(&text), Err(QrError::TooLong(3000))));
    }
}
