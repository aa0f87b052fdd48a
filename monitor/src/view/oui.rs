//! Who made a device, from its MAC address: the IEEE registration authority's public
//! assignments as Debian's `ieee-data` package ships them (`/usr/share/ieee-data`).
//!
//! Three block sizes exist: MA-L (24-bit prefix, `oui.csv`), MA-M (28-bit, `mam.csv`) and
//! MA-S (36-bit, `oui36.csv`; the older IAB blocks in `iab.csv` are 36-bit too). A
//! 36-bit block is carved out of a 24-bit one (often registered to the IEEE itself), so
//! the longest prefix is looked up first. Random and locally administered MACs (bit 1 of
//! the first octet) and group addresses (bit 0) have no vendor by definition.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

/// Where Debian's `ieee-data` puts the registry files.
pub const DEFAULT_IEEE_DATA_DIR: &str = "/usr/share/ieee-data";

/// Registry files, with the prefix length in bits of the blocks each assigns.
const FILES: [(&str, u8); 4] = [
    ("oui36.csv", 36),
    ("iab.csv", 36),
    ("mam.csv", 28),
    ("oui.csv", 24),
];

#[derive(Debug, thiserror::Error)]
pub enum OuiError {
    #[error(
        "no IEEE registry files in {0} (install Debian's `ieee-data` package, or `cargo xtask setup`)"
    )]
    Missing(PathBuf),
    #[error("reading {0}")]
    Read(PathBuf, #[source] std::io::Error),
}

/// The assignments, one table per prefix length.
#[derive(Clone, Debug, Default)]
pub struct OuiDb {
    /// (prefix length in bits, prefix value → organization), longest first.
    tables: Vec<(u8, HashMap<u64, String>)>,
}

/// Why a MAC has no vendor, or the vendor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Vendor {
    Registered(String),
    /// Locally administered (random, virtual, or set by hand): no registry says who made it.
    LocallyAdministered,
    /// A group (multicast) address, not a device's.
    Group,
    /// Universally administered but in no block the registry files know.
    Unknown,
}

impl Vendor {
    /// The organization's name, when there is one.
    pub fn name(&self) -> Option<&str> {
        match self {
            Vendor::Registered(name) => Some(name),
            _ => None,
        }
    }
}

impl OuiDb {
    /// Loads every registry file present in `dir`; at least one must be there.
    pub fn load(dir: &Path) -> Result<OuiDb, OuiError> {
        let mut db = OuiDb::default();
        let mut found = false;
        for (file, bits) in FILES {
            let path = dir.join(file);
            let text = match std::fs::read(&path) {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(OuiError::Read(path, e)),
            };
            found = true;
            db.add_csv(bits, &text);
        }
        if !found {
            return Err(OuiError::Missing(dir.to_path_buf()));
        }
        Ok(db)
    }

    /// Loads from [`DEFAULT_IEEE_DATA_DIR`].
    pub fn load_default() -> Result<OuiDb, OuiError> {
        OuiDb::load(Path::new(DEFAULT_IEEE_DATA_DIR))
    }

    /// Adds the rows of one registry CSV (`Registry,Assignment,Organization Name,...`)
    /// whose assignments are `bits` long. Rows that do not parse are skipped: the files
    /// are the IEEE's, not ours, and one odd row must not hide the rest.
    pub fn add_csv(&mut self, bits: u8, text: &str) {
        let index = match self.tables.iter().position(|(b, _)| *b == bits) {
            Some(i) => i,
            None => {
                self.tables.push((bits, HashMap::new()));
                self.tables.sort_by_key(|t| std::cmp::Reverse(t.0));
                self.tables
                    .iter()
                    .position(|(b, _)| *b == bits)
                    .unwrap_or_default()
            }
        };
        let table = &mut self.tables[index].1;
        for line in text.lines().skip(1) {
            let fields = csv_fields(line);
            let (Some(assignment), Some(org)) = (fields.get(1), fields.get(2)) else {
                continue;
            };
            if assignment.len() * 4 != usize::from(bits) {
                continue;
            }
            let Ok(prefix) = u64::from_str_radix(assignment, 16) else {
                continue;
            };
            let org = org.trim();
            if !org.is_empty() {
                table.entry(prefix).or_insert_with(|| org.to_string());
            }
        }
    }

    /// The vendor of `mac`, longest registered prefix first.
    pub fn lookup(&self, mac: [u8; 6]) -> Vendor {
        if mac[0] & 0x01 != 0 {
            return Vendor::Group;
        }
        if mac[0] & 0x02 != 0 {
            return Vendor::LocallyAdministered;
        }
        let value = mac.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        for (bits, table) in &self.tables {
            if let Some(org) = table.get(&(value >> (48 - u32::from(*bits)))) {
                return Vendor::Registered(org.clone());
            }
        }
        Vendor::Unknown
    }

    /// Number of assignments known.
    pub fn len(&self) -> usize {
        self.tables.iter().map(|(_, t)| t.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Splits one CSV line into fields: commas separate, double quotes enclose fields that
/// contain commas, and `""` inside quotes is one quote (RFC 4180, as the IEEE writes it).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if field.is_empty() => quoted = true,
            (',', false) => fields.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    fields.push(field);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> OuiDb {
        let mut db = OuiDb::default();
        db.add_csv(
            24,
            "Registry,Assignment,Organization Name,Organization Address\n\
             MA-L,0009FB,Philips Patient Monitoring,Hewlett-Packard-Str.2 Boeblingen  DE 71034 \n\
             MA-L,70B3D5,IEEE Registration Authority,445 Hoes Lane Piscataway NJ US 08554 \n\
             MA-L,001122,\"Quoted, Inc.\",\"1 \"\"Main\"\" St\"\n\
             MA-L,XYZ,broken row,\n",
        );
        db.add_csv(
            36,
            "Registry,Assignment,Organization Name,Organization Address\n\
             MA-S,70B3D5F2F,TELEPLATFORMS,\"Polbina st., 3/1 Moscow  RU 109388 \"\n",
        );
        db.add_csv(
            28,
            "Registry,Assignment,Organization Name,Organization Address\n\
             MA-M,70B3D57,Someone Medium,Somewhere\n",
        );
        db
    }

    #[test]
    fn longest_prefix_wins() {
        let db = db();
        // 70:B3:D5:F2:Fx:xx is a 36-bit block inside the IEEE's own 24-bit one.
        assert_eq!(
            db.lookup([0x70, 0xb3, 0xd5, 0xf2, 0xf1, 0x23]),
            Vendor::Registered("TELEPLATFORMS".into())
        );
        assert_eq!(
            db.lookup([0x70, 0xb3, 0xd5, 0x71, 0x00, 0x00]),
            Vendor::Registered("Someone Medium".into())
        );
        assert_eq!(
            db.lookup([0x70, 0xb3, 0xd5, 0x11, 0x00, 0x00]),
            Vendor::Registered("IEEE Registration Authority".into())
        );
        assert_eq!(
            db.lookup([0x00, 0x09, 0xfb, 0x12, 0x34, 0x01]).name(),
            Some("Philips Patient Monitoring")
        );
        assert_eq!(
            db.lookup([0x00, 0x11, 0x22, 0, 0, 1]).name(),
            Some("Quoted, Inc.")
        );
        assert_eq!(db.len(), 5);
    }

    #[test]
    fn local_group_and_unknown_macs_have_no_vendor() {
        let db = db();
        // 02:09:fb would be Philips with the local bit clear; set, it is nobody's.
        assert_eq!(
            db.lookup([0x02, 0x09, 0xfb, 0, 0, 1]),
            Vendor::LocallyAdministered
        );
        assert_eq!(
            db.lookup([0xda, 0x11, 0x22, 0, 0, 1]),
            Vendor::LocallyAdministered
        );
        assert_eq!(db.lookup([0x01, 0x00, 0x5e, 0, 0, 1]), Vendor::Group);
        assert_eq!(db.lookup([0x00, 0x00, 0x01, 0, 0, 1]), Vendor::Unknown);
    }

    #[test]
    fn csv_quotes_and_escapes() {
        assert_eq!(
            csv_fields("a,\"b, c\",\"say \"\"hi\"\"\",d\r"),
            ["a", "b, c", "say \"hi\"", "d"]
        );
        assert_eq!(csv_fields("a,,b"), ["a", "", "b"]);
    }

    /// The real registry (`cargo xtask setup` installs Debian's `ieee-data`).
    #[test]
    fn debian_registry_names_the_example_wards_pump_maker() {
        let dir = Path::new(DEFAULT_IEEE_DATA_DIR);
        let db = OuiDb::load(dir).unwrap_or_else(|e| panic!("{e}"));
        assert!(db.len() > 30_000, "{} assignments", db.len());
        assert_eq!(
            db.lookup([0x00, 0x09, 0xfb, 0x12, 0x34, 0x01]).name(),
            Some("Philips Patient Monitoring")
        );
    }
}
