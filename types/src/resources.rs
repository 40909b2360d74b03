//! Scalar resources with exact integer accounting.
//!
//! Every quantity is an integer: cpus in milli-cpus, `mem` and `disk` in bytes, custom scalars
//! (`gpu`, `fpga`, ...) in milli-units like cpus. Floats appear only in
//! [`Resources::dominant_share`], which is a ratio used for ordering, never for accounting, so
//! allocations can be added and subtracted forever without drift.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

/// Errors from resource arithmetic and names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourcesError {
    /// An addition overflowed `u64` (absurd totals or quotas).
    #[error("resource arithmetic overflowed adding {rhs} to {lhs}")]
    Overflow {
        /// Left operand.
        lhs: Resources,
        /// Right operand.
        rhs: Resources,
    },
    /// A subtraction would go below zero.
    #[error("insufficient resources: {available} does not contain {requested}")]
    Insufficient {
        /// What was there.
        available: Resources,
        /// What was asked for.
        requested: Resources,
    },
    /// A custom scalar name is empty, has characters outside `[A-Za-z0-9_-]`, or is one of the
    /// built-in names (`cpus`, `mem`, `disk`).
    #[error("invalid scalar resource name {0:?}")]
    InvalidName(String),
}

/// Name of a custom scalar resource (`gpu`). Cheap to clone.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ScalarName(Arc<str>);

impl ScalarName {
    /// Validates a custom scalar name: non-empty, `[A-Za-z0-9_-]`, not `cpus`, `mem` or `disk`.
    pub fn new(name: &str) -> Result<Self, ResourcesError> {
        let ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            && !matches!(name, "cpus" | "mem" | "disk");
        if ok {
            Ok(Self(name.into()))
        } else {
            Err(ResourcesError::InvalidName(name.to_owned()))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ScalarName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for ScalarName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A bag of scalar resources.
///
/// `cpus`, `mem` and `disk` are fixed fields because every agent has them and the hot paths
/// (containment checks in the allocation cycle) should not chase pointers; custom scalars live
/// in a small vector sorted by name with no zero entries, so equal bags compare equal.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Resources {
    cpus: u64,
    mem: u64,
    disk: u64,
    scalars: Vec<(ScalarName, u64)>,
}

impl Resources {
    /// The empty bag.
    pub const fn new() -> Self {
        Self {
            cpus: 0,
            mem: 0,
            disk: 0,
            scalars: Vec::new(),
        }
    }

    /// Sets cpus, in milli-cpus (1 cpu = 1000).
    #[must_use]
    pub fn with_cpus_milli(mut self, milli: u64) -> Self {
        self.cpus = milli;
        self
    }

    /// Sets memory in bytes.
    #[must_use]
    pub fn with_mem_bytes(mut self, bytes: u64) -> Self {
        self.mem = bytes;
        self
    }

    /// Sets memory in MiB (saturating).
    #[must_use]
    pub fn with_mem_mib(self, mib: u64) -> Self {
        self.with_mem_bytes(mib.saturating_mul(1 << 20))
    }

    /// Sets disk in bytes.
    #[must_use]
    pub fn with_disk_bytes(mut self, bytes: u64) -> Self {
        self.disk = bytes;
        self
    }

    /// Sets disk in MiB (saturating).
    #[must_use]
    pub fn with_disk_mib(self, mib: u64) -> Self {
        self.with_disk_bytes(mib.saturating_mul(1 << 20))
    }

    /// Sets a custom scalar, in milli-units (1 gpu = 1000). Zero removes it.
    #[must_use]
    pub fn with_scalar_milli(mut self, name: &ScalarName, milli: u64) -> Self {
        match self.scalars.binary_search_by(|(n, _)| n.cmp(name)) {
            Ok(i) if milli == 0 => {
                self.scalars.remove(i);
            }
            Ok(i) => self.scalars[i].1 = milli,
            Err(_) if milli == 0 => {}
            Err(i) => self.scalars.insert(i, (name.clone(), milli)),
        }
        self
    }

    /// Milli-cpus.
    pub fn cpus_milli(&self) -> u64 {
        self.cpus
    }

    /// Memory in bytes.
    pub fn mem_bytes(&self) -> u64 {
        self.mem
    }

    /// Disk in bytes.
    pub fn disk_bytes(&self) -> u64 {
        self.disk
    }

    /// A custom scalar in milli-units (0 when absent).
    pub fn scalar_milli(&self, name: &str) -> u64 {
        self.scalars
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .map_or(0, |i| self.scalars[i].1)
    }

    /// Custom scalars, sorted by name, non-zero.
    pub fn scalars(&self) -> impl Iterator<Item = (&ScalarName, u64)> {
        self.scalars.iter().map(|(n, v)| (n, *v))
    }

    /// True when every quantity is zero.
    pub fn is_empty(&self) -> bool {
        self.cpus == 0 && self.mem == 0 && self.disk == 0 && self.scalars.is_empty()
    }

    /// True when `self` has at least as much of every resource as `other`.
    pub fn contains(&self, other: &Resources) -> bool {
        self.cpus >= other.cpus
            && self.mem >= other.mem
            && self.disk >= other.disk
            && (other.scalars.is_empty()
                || other
                    .scalars
                    .iter()
                    .all(|(n, v)| self.scalar_milli(n.as_str()) >= *v))
    }

    /// `self + other`, or [`ResourcesError::Overflow`].
    pub fn checked_add(&self, other: &Resources) -> Result<Resources, ResourcesError> {
        let overflow = || ResourcesError::Overflow {
            lhs: self.clone(),
            rhs: other.clone(),
        };
        let mut failed = false;
        let scalars = merge(&self.scalars, &other.scalars, |a, b| {
            a.checked_add(b).unwrap_or_else(|| {
                failed = true;
                0
            })
        });
        if failed {
            return Err(overflow());
        }
        Ok(Resources {
            cpus: self.cpus.checked_add(other.cpus).ok_or_else(overflow)?,
            mem: self.mem.checked_add(other.mem).ok_or_else(overflow)?,
            disk: self.disk.checked_add(other.disk).ok_or_else(overflow)?,
            scalars,
        })
    }

    /// `self - other`, or [`ResourcesError::Insufficient`] when `self` does not contain `other`.
    pub fn checked_sub(&self, other: &Resources) -> Result<Resources, ResourcesError> {
        if self.contains(other) {
            Ok(self.saturating_sub(other))
        } else {
            Err(ResourcesError::Insufficient {
                available: self.clone(),
                requested: other.clone(),
            })
        }
    }

    /// `self - other`, clamping each quantity at zero.
    pub fn saturating_sub(&self, other: &Resources) -> Resources {
        Resources {
            cpus: self.cpus.saturating_sub(other.cpus),
            mem: self.mem.saturating_sub(other.mem),
            disk: self.disk.saturating_sub(other.disk),
            scalars: merge_left(&self.scalars, &other.scalars, u64::saturating_sub),
        }
    }

    /// `self + other`, clamping at `u64::MAX`. Internal bookkeeping uses this where the
    /// operands are bounded by a total that was checked when it was built.
    pub fn saturating_add(&self, other: &Resources) -> Resources {
        Resources {
            cpus: self.cpus.saturating_add(other.cpus),
            mem: self.mem.saturating_add(other.mem),
            disk: self.disk.saturating_add(other.disk),
            scalars: merge(&self.scalars, &other.scalars, u64::saturating_add),
        }
    }

    /// Component-wise minimum (what both bags have).
    pub fn min(&self, other: &Resources) -> Resources {
        Resources {
            cpus: self.cpus.min(other.cpus),
            mem: self.mem.min(other.mem),
            disk: self.disk.min(other.disk),
            // Absent on either side means zero, which `merge_left` drops.
            scalars: merge_left(&self.scalars, &other.scalars, u64::min),
        }
    }

    /// Component-wise maximum.
    pub fn max(&self, other: &Resources) -> Resources {
        Resources {
            cpus: self.cpus.max(other.cpus),
            mem: self.mem.max(other.mem),
            disk: self.disk.max(other.disk),
            scalars: merge(&self.scalars, &other.scalars, u64::max),
        }
    }

    /// Keeps only the kinds that are non-zero in `kinds`.
    pub fn restrict_to(&self, kinds: &Resources) -> Resources {
        let keep = |k: u64, v: u64| if k > 0 { v } else { 0 };
        Resources {
            cpus: keep(kinds.cpus, self.cpus),
            mem: keep(kinds.mem, self.mem),
            disk: keep(kinds.disk, self.disk),
            scalars: self
                .scalars
                .iter()
                .filter(|(n, _)| kinds.scalar_milli(n.as_str()) > 0)
                .cloned()
                .collect(),
        }
    }

    /// Drops the kinds that are non-zero in `kinds`.
    pub fn without_kinds_of(&self, kinds: &Resources) -> Resources {
        let keep = |k: u64, v: u64| if k > 0 { 0 } else { v };
        Resources {
            cpus: keep(kinds.cpus, self.cpus),
            mem: keep(kinds.mem, self.mem),
            disk: keep(kinds.disk, self.disk),
            scalars: self
                .scalars
                .iter()
                .filter(|(n, _)| kinds.scalar_milli(n.as_str()) == 0)
                .cloned()
                .collect(),
        }
    }

    /// The dominant share of `self` relative to `total`: the largest fraction of any resource
    /// kind that `self` holds. Kinds absent from `total` are ignored. The result is a ratio for
    /// ordering; accounting never goes through it.
    pub fn dominant_share(&self, total: &Resources) -> f64 {
        fn ratio(a: u64, t: u64) -> f64 {
            if t == 0 { 0.0 } else { a as f64 / t as f64 }
        }
        let mut share = ratio(self.cpus, total.cpus)
            .max(ratio(self.mem, total.mem))
            .max(ratio(self.disk, total.disk));
        for (name, v) in &self.scalars {
            share = share.max(ratio(*v, total.scalar_milli(name.as_str())));
        }
        share
    }

    /// Per-kind view for code that treats every kind alike (limits, tests).
    pub fn kinds(&self) -> impl Iterator<Item = (ResourceKind<'_>, u64)> {
        [
            (ResourceKind::Cpus, self.cpus),
            (ResourceKind::Mem, self.mem),
            (ResourceKind::Disk, self.disk),
        ]
        .into_iter()
        .filter(|(_, v)| *v > 0)
        .chain(
            self.scalars
                .iter()
                .map(|(n, v)| (ResourceKind::Scalar(n), *v)),
        )
    }

    /// The amount of one kind (0 when absent).
    pub fn get(&self, kind: ResourceKind<'_>) -> u64 {
        match kind {
            ResourceKind::Cpus => self.cpus,
            ResourceKind::Mem => self.mem,
            ResourceKind::Disk => self.disk,
            ResourceKind::Scalar(n) => self.scalar_milli(n.as_str()),
        }
    }

    /// Sets the amount of one kind (zero removes a custom scalar).
    pub fn set(&mut self, kind: ResourceKind<'_>, value: u64) {
        match kind {
            ResourceKind::Cpus => self.cpus = value,
            ResourceKind::Mem => self.mem = value,
            ResourceKind::Disk => self.disk = value,
            ResourceKind::Scalar(n) => *self = std::mem::take(self).with_scalar_milli(n, value),
        }
    }
}

/// One resource kind, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind<'a> {
    /// CPU, in milli-cpus.
    Cpus,
    /// Memory, in bytes.
    Mem,
    /// Disk, in bytes.
    Disk,
    /// A custom scalar, in milli-units.
    Scalar(&'a ScalarName),
}

/// Sorted merge of two scalar lists, keeping keys from both; drops zero results.
fn merge(
    a: &[(ScalarName, u64)],
    b: &[(ScalarName, u64)],
    mut f: impl FnMut(u64, u64) -> u64,
) -> Vec<(ScalarName, u64)> {
    if a.is_empty() && b.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let ord = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) => x.0.cmp(&y.0),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        let (name, v) = match ord {
            Ordering::Less => {
                i += 1;
                (&a[i - 1].0, f(a[i - 1].1, 0))
            }
            Ordering::Greater => {
                j += 1;
                (&b[j - 1].0, f(0, b[j - 1].1))
            }
            Ordering::Equal => {
                i += 1;
                j += 1;
                (&a[i - 1].0, f(a[i - 1].1, b[j - 1].1))
            }
        };
        if v > 0 {
            out.push((name.clone(), v));
        }
    }
    out
}

/// Like [`merge`] but only keys of `a` survive.
fn merge_left(
    a: &[(ScalarName, u64)],
    b: &[(ScalarName, u64)],
    mut f: impl FnMut(u64, u64) -> u64,
) -> Vec<(ScalarName, u64)> {
    a.iter()
        .filter_map(|(n, v)| {
            let other = b.binary_search_by(|(m, _)| m.cmp(n)).map_or(0, |i| b[i].1);
            let r = f(*v, other);
            (r > 0).then(|| (n.clone(), r))
        })
        .collect()
}

/// Formats milli-units as a decimal (`1500` -> `1.5`).
fn fmt_milli(f: &mut fmt::Formatter<'_>, milli: u64) -> fmt::Result {
    let (whole, frac) = (milli / 1000, milli % 1000);
    if frac == 0 {
        write!(f, "{whole}")
    } else {
        let s = format!("{frac:03}");
        write!(f, "{whole}.{}", s.trim_end_matches('0'))
    }
}

impl fmt::Display for Resources {
    /// Mesos-like text: `cpus:1.5;mem:512MiB;disk:1024B;gpu:1`. Bytes are shown in MiB when
    /// they are whole MiB, else in bytes, so the text stays exact.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("{}");
        }
        let mut sep = "";
        let bytes = |f: &mut fmt::Formatter<'_>, name: &str, v: u64, sep: &mut &str| {
            if v == 0 {
                return Ok(());
            }
            write!(f, "{sep}{name}:")?;
            *sep = ";";
            if v.is_multiple_of(1 << 20) {
                write!(f, "{}MiB", v >> 20)
            } else {
                write!(f, "{v}B")
            }
        };
        if self.cpus > 0 {
            f.write_str("cpus:")?;
            fmt_milli(f, self.cpus)?;
            sep = ";";
        }
        bytes(f, "mem", self.mem, &mut sep)?;
        bytes(f, "disk", self.disk, &mut sep)?;
        for (n, v) in &self.scalars {
            write!(f, "{sep}{n}:")?;
            fmt_milli(f, *v)?;
            sep = ";";
        }
        Ok(())
    }
}

impl fmt::Debug for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Resources held by one framework in one role on one agent, split by where they came from:
/// the agent's unreserved pool, or the reservations for that role and its ancestors.
///
/// Offers carry this split so frameworks see which resources are reserved, and recovery puts
/// every unit back into the pool it came from.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Allocation {
    /// From the agent's unreserved pool.
    pub unreserved: Resources,
    /// From the agent's reservations for the role and its ancestors.
    pub reserved: Resources,
}

impl Allocation {
    /// An allocation of unreserved resources only.
    pub fn unreserved(resources: Resources) -> Self {
        Self {
            unreserved: resources,
            reserved: Resources::new(),
        }
    }

    /// An allocation of reserved resources only.
    pub fn reserved(resources: Resources) -> Self {
        Self {
            unreserved: Resources::new(),
            reserved: resources,
        }
    }

    /// Reserved plus unreserved.
    pub fn total(&self) -> Resources {
        self.unreserved.saturating_add(&self.reserved)
    }

    /// True when both parts are empty.
    pub fn is_empty(&self) -> bool {
        self.unreserved.is_empty() && self.reserved.is_empty()
    }

    /// True when both parts of `self` contain the matching parts of `other`.
    pub fn contains(&self, other: &Allocation) -> bool {
        self.unreserved.contains(&other.unreserved) && self.reserved.contains(&other.reserved)
    }

    /// Both parts added, clamping at `u64::MAX`.
    pub fn saturating_add(&self, other: &Allocation) -> Allocation {
        Allocation {
            unreserved: self.unreserved.saturating_add(&other.unreserved),
            reserved: self.reserved.saturating_add(&other.reserved),
        }
    }

    /// Both parts subtracted, clamping at zero.
    pub fn saturating_sub(&self, other: &Allocation) -> Allocation {
        Allocation {
            unreserved: self.unreserved.saturating_sub(&other.unreserved),
            reserved: self.reserved.saturating_sub(&other.reserved),
        }
    }
}

impl fmt::Debug for Allocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{{unreserved: {}, reserved: {}}}",
            self.unreserved, self.reserved
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(cpus: u64, mem: u64) -> Resources {
        Resources::new().with_cpus_milli(cpus).with_mem_bytes(mem)
    }

    #[test]
    fn add_sub_contains() {
        let a = r(1500, 100);
        let b = r(500, 40);
        let sum = a.checked_add(&b).unwrap();
        assert_eq!(sum, r(2000, 140));
        assert!(sum.contains(&a) && sum.contains(&b));
        assert_eq!(sum.checked_sub(&b).unwrap(), a);
        assert!(matches!(
            b.checked_sub(&a),
            Err(ResourcesError::Insufficient { .. })
        ));
        assert_eq!(b.saturating_sub(&a), Resources::new());
        assert!(b.saturating_sub(&a).is_empty());
    }

    #[test]
    fn overflow_is_an_error() {
        let big = r(u64::MAX, 0);
        assert!(matches!(
            big.checked_add(&r(1, 0)),
            Err(ResourcesError::Overflow { .. })
        ));
        let gpu = ScalarName::new("gpu").unwrap();
        let g = Resources::new().with_scalar_milli(&gpu, u64::MAX);
        assert!(g.checked_add(&g).is_err());
    }

    #[test]
    fn custom_scalars_merge_sorted_and_drop_zeros() {
        let gpu = ScalarName::new("gpu").unwrap();
        let fpga = ScalarName::new("fpga").unwrap();
        let a = Resources::new().with_scalar_milli(&gpu, 2000);
        let b = Resources::new()
            .with_scalar_milli(&fpga, 1000)
            .with_scalar_milli(&gpu, 1000);
        let sum = a.checked_add(&b).unwrap();
        assert_eq!(sum.scalar_milli("gpu"), 3000);
        assert_eq!(sum.scalar_milli("fpga"), 1000);
        assert_eq!(
            sum.scalars().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["fpga", "gpu"]
        );
        let back = sum.checked_sub(&b).unwrap();
        assert_eq!(
            back, a,
            "zero entries must vanish so equality is structural"
        );
        assert!(!a.contains(&b));
        assert_eq!(a.min(&b), Resources::new().with_scalar_milli(&gpu, 1000));
        assert_eq!(
            a.max(&b),
            sum.saturating_sub(&Resources::new().with_scalar_milli(&gpu, 1000))
        );
    }

    #[test]
    fn scalar_names_are_validated() {
        assert!(ScalarName::new("gpu").is_ok());
        assert!(ScalarName::new("my_res-2").is_ok());
        for bad in ["", "cpus", "mem", "disk", "a b", "a/b", "é"] {
            assert_eq!(
                ScalarName::new(bad),
                Err(ResourcesError::InvalidName(bad.to_owned()))
            );
        }
    }

    #[test]
    fn dominant_share_takes_the_largest_fraction() {
        let total = r(10_000, 100);
        assert_eq!(r(2000, 10).dominant_share(&total), 0.2);
        assert_eq!(r(1000, 30).dominant_share(&total), 0.3);
        // Kinds absent from the total are ignored rather than dividing by zero.
        let gpu = ScalarName::new("gpu").unwrap();
        let x = r(1000, 0).with_scalar_milli(&gpu, 1000);
        assert_eq!(x.dominant_share(&total), 0.1);
        assert_eq!(Resources::new().dominant_share(&Resources::new()), 0.0);
    }

    #[test]
    fn restrict_and_without() {
        let gpu = ScalarName::new("gpu").unwrap();
        let x = r(1000, 5).with_scalar_milli(&gpu, 7);
        let kinds = r(1, 0).with_scalar_milli(&gpu, 1);
        assert_eq!(x.restrict_to(&kinds), r(1000, 0).with_scalar_milli(&gpu, 7));
        assert_eq!(x.without_kinds_of(&kinds), r(0, 5));
    }

    #[test]
    fn display_is_exact() {
        let gpu = ScalarName::new("gpu").unwrap();
        let x = Resources::new()
            .with_cpus_milli(1500)
            .with_mem_mib(512)
            .with_disk_bytes(1000)
            .with_scalar_milli(&gpu, 1000);
        assert_eq!(x.to_string(), "cpus:1.5;mem:512MiB;disk:1000B;gpu:1");
        assert_eq!(Resources::new().to_string(), "{}");
        assert_eq!(r(10, 0).to_string(), "cpus:0.01");
    }
}
