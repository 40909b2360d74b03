//! Proto <-> domain conversions for IDs, resources, roles, weights, quotas and filters.
//!
//! Incoming messages are validated here, once, at the service boundary (STYLE.md, "typed IDs
//! at the edge"): the master core receives `AgentId`s, `Resources` and `Role`s, never raw
//! strings. Outgoing conversions cannot fail.
//!
//! Functions take the field's name for the error; callers nest it with
//! [`ProtoError::within`] so a client learns exactly which field of which task was wrong.

use std::time::Duration;

use corral_types::{Allocation, Id, Quota, QuotaLimits, Resources, Role, ScalarName, Weight};

use crate::error::{ProtoError, at_index};
use crate::limits;
use crate::v1;

/// Refusal applied when a DECLINE (or the leftovers of an ACCEPT) sets no `refuse_seconds`,
/// as in Mesos.
pub const DEFAULT_REFUSE: Duration = Duration::from_secs(5);

/// Longest refusal; larger `refuse_seconds` are clamped to it, as in Mesos.
pub const MAX_REFUSE: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Parses an ID field.
pub fn parse_id<T: Id>(field: &'static str, id: &str) -> Result<T, ProtoError> {
    T::parse(id).map_err(|error| ProtoError::InvalidId {
        field: field.into(),
        error,
    })
}

/// Parses an ID field that may be absent: `None` and `""` both give `None`. Use it with
/// `optional string` fields (`x.as_deref()`) and with plain string fields where empty means
/// unset (`Some(&x)`).
pub fn parse_optional_id<T: Id>(
    field: &'static str,
    id: Option<&str>,
) -> Result<Option<T>, ProtoError> {
    match id {
        None | Some("") => Ok(None),
        Some(id) => parse_id(field, id).map(Some),
    }
}

/// Refuses a repeated field of more than [`limits::MAX_LIST_ITEMS`] elements.
pub fn bounded_list(field: &'static str, len: usize) -> Result<(), ProtoError> {
    at_most(field, len, limits::MAX_LIST_ITEMS, "elements")
}

fn at_most(field: &str, len: usize, max: usize, what: &str) -> Result<(), ProtoError> {
    if len > max {
        return Err(ProtoError::invalid(
            field.to_owned(),
            format!("{len} {what}, at most {max}"),
        ));
    }
    Ok(())
}

/// Refuses labels (or attributes) beyond [`limits::MAX_LABELS`] or whose key or value is
/// longer than [`limits::MAX_LABEL_KEY_BYTES`] / [`limits::MAX_LABEL_VALUE_BYTES`].
pub fn bounded_labels<'a>(
    field: &'static str,
    labels: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
) -> Result<(), ProtoError> {
    at_most(field, labels.len(), limits::MAX_LABELS, "labels")?;
    for (key, value) in labels {
        let at = |part: &str| format!("{field}[{key:.32?}].{part}");
        at_most(&at("key"), key.len(), limits::MAX_LABEL_KEY_BYTES, "bytes")?;
        at_most(
            &at("value"),
            value.len(),
            limits::MAX_LABEL_VALUE_BYTES,
            "bytes",
        )?;
    }
    Ok(())
}

/// Parses a list of IDs; the error names the element (`offer_ids[3]`).
pub fn parse_ids<T: Id>(field: &'static str, ids: &[String]) -> Result<Vec<T>, ProtoError> {
    bounded_list(field, ids.len())?;
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            T::parse(id).map_err(|error| ProtoError::InvalidId {
                field: format!("{field}[{i}]").into(),
                error,
            })
        })
        .collect()
}

impl From<&Resources> for v1::Resources {
    fn from(r: &Resources) -> Self {
        v1::Resources {
            cpus_milli: r.cpus_milli(),
            mem_bytes: r.mem_bytes(),
            disk_bytes: r.disk_bytes(),
            scalars_milli: r
                .scalars()
                .map(|(name, v)| (name.as_str().to_owned(), v))
                .collect(),
        }
    }
}

impl From<Resources> for v1::Resources {
    fn from(r: Resources) -> Self {
        Self::from(&r)
    }
}

impl TryFrom<&v1::Resources> for Resources {
    type Error = ProtoError;

    /// Validates custom scalar names; zero entries are dropped (absent and zero are the same).
    fn try_from(r: &v1::Resources) -> Result<Self, ProtoError> {
        let mut out = Resources::new()
            .with_cpus_milli(r.cpus_milli)
            .with_mem_bytes(r.mem_bytes)
            .with_disk_bytes(r.disk_bytes);
        for (name, &milli) in &r.scalars_milli {
            let name = scalar_name(name)?;
            out = out.with_scalar_milli(&name, milli);
        }
        Ok(out)
    }
}

impl TryFrom<v1::Resources> for Resources {
    type Error = ProtoError;

    fn try_from(r: v1::Resources) -> Result<Self, ProtoError> {
        Self::try_from(&r)
    }
}

fn scalar_name(name: &str) -> Result<ScalarName, ProtoError> {
    ScalarName::new(name).map_err(|_| ProtoError::InvalidResourceName {
        field: format!("scalars_milli[{name:?}]").into(),
        name: name.to_owned(),
    })
}

/// Converts a message field that must be set: `None` is [`ProtoError::MissingField`], and
/// errors inside are nested under `field`.
pub fn require<'a, P, D>(field: &'static str, value: Option<&'a P>) -> Result<D, ProtoError>
where
    D: TryFrom<&'a P, Error = ProtoError>,
{
    let value = value.ok_or_else(|| ProtoError::missing(field))?;
    D::try_from(value).map_err(|e| e.within(field))
}

/// Converts a message field whose absence means the domain type's default (empty
/// resources, unlimited limits); errors inside are nested under `field`.
pub fn or_default<'a, P, D>(field: &'static str, value: Option<&'a P>) -> Result<D, ProtoError>
where
    D: TryFrom<&'a P, Error = ProtoError> + Default,
{
    value.map_or_else(
        || Ok(D::default()),
        |v| D::try_from(v).map_err(|e| e.within(field)),
    )
}

/// The resources of an offer: everything offered, and the part reserved to its role
/// (`Offer.resources`, `Offer.reserved`).
pub fn offer_resources(allocation: &Allocation) -> (v1::Resources, v1::Resources) {
    (
        v1::Resources::from(allocation.total()),
        v1::Resources::from(&allocation.reserved),
    )
}

impl TryFrom<&v1::ResourceLimits> for QuotaLimits {
    type Error = ProtoError;

    /// Set kinds are bounded; a kind set to zero allows none; unset kinds are unlimited.
    fn try_from(l: &v1::ResourceLimits) -> Result<Self, ProtoError> {
        let mut bounded = Resources::new();
        // Kinds bounded at zero, marked with 1 (Resources drops zero entries).
        let mut zero = Resources::new();
        type Setter = fn(Resources, u64) -> Resources;
        let builtins: [(Option<u64>, Setter); 3] = [
            (l.cpus_milli, Resources::with_cpus_milli),
            (l.mem_bytes, Resources::with_mem_bytes),
            (l.disk_bytes, Resources::with_disk_bytes),
        ];
        for (bound, set) in builtins {
            match bound {
                Some(0) => zero = set(zero, 1),
                Some(v) => bounded = set(bounded, v),
                None => {}
            }
        }
        for (name, &v) in &l.scalars_milli {
            let name = scalar_name(name)?;
            if v == 0 {
                zero = zero.with_scalar_milli(&name, 1);
            } else {
                bounded = bounded.with_scalar_milli(&name, v);
            }
        }
        Ok(QuotaLimits::at_most(bounded).with_none_of(&zero))
    }
}

impl TryFrom<&v1::Quota> for Quota {
    type Error = ProtoError;

    /// An unset guarantee guarantees nothing; an unset limit is unlimited.
    fn try_from(q: &v1::Quota) -> Result<Self, ProtoError> {
        Ok(Quota {
            guarantee: or_default("guarantee", q.guarantee.as_ref())?,
            limit: or_default("limit", q.limit.as_ref())?,
        })
    }
}

impl From<&QuotaLimits> for v1::ResourceLimits {
    /// Bounded kinds carry their bound, kinds bounded at zero carry 0, unlimited kinds are
    /// unset: the inverse of the `TryFrom` above.
    fn from(l: &QuotaLimits) -> Self {
        let (bounds, zero) = (l.bounds(), l.none_of());
        let bound = |bounded: u64, zeroed: u64| match (bounded, zeroed) {
            (_, z) if z > 0 => Some(0),
            (0, _) => None,
            (b, _) => Some(b),
        };
        let mut scalars_milli: std::collections::BTreeMap<String, u64> = bounds
            .scalars()
            .map(|(n, v)| (n.as_str().to_owned(), v))
            .collect();
        for (name, _) in zero.scalars() {
            scalars_milli.insert(name.as_str().to_owned(), 0);
        }
        v1::ResourceLimits {
            cpus_milli: bound(bounds.cpus_milli(), zero.cpus_milli()),
            mem_bytes: bound(bounds.mem_bytes(), zero.mem_bytes()),
            disk_bytes: bound(bounds.disk_bytes(), zero.disk_bytes()),
            scalars_milli,
        }
    }
}

impl From<&Quota> for v1::Quota {
    fn from(q: &Quota) -> Self {
        v1::Quota {
            guarantee: Some((&q.guarantee).into()),
            limit: Some((&q.limit).into()),
        }
    }
}

/// Parses a role name (`*`, `eng`, `eng/batch`).
pub fn parse_role(field: &'static str, role: &str) -> Result<Role, ProtoError> {
    Role::new(role).map_err(|error| ProtoError::InvalidRole {
        field: field.into(),
        error,
    })
}

/// Parses a list of role names; the error names the element.
pub fn parse_roles(field: &'static str, roles: &[String]) -> Result<Vec<Role>, ProtoError> {
    bounded_list(field, roles.len())?;
    roles
        .iter()
        .enumerate()
        .map(|(i, r)| {
            Role::new(r).map_err(|error| ProtoError::InvalidRole {
                field: format!("{field}[{i}]").into(),
                error,
            })
        })
        .collect()
}

/// Parses a DRF weight: from [`Weight::MIN`] to [`Weight::MAX`].
pub fn parse_weight(field: &'static str, weight: f64) -> Result<Weight, ProtoError> {
    Weight::new(weight)
        .map_err(|_| ProtoError::out_of_range(field, format!("{weight:?}"), Weight::RANGE))
}

/// How long declined resources are refused: [`DEFAULT_REFUSE`] when unset, clamped to
/// [`MAX_REFUSE`]; negative, NaN and infinite values are errors.
pub fn refuse_duration(filters: Option<&v1::Filters>) -> Result<Duration, ProtoError> {
    let Some(secs) = filters.and_then(|f| f.refuse_seconds) else {
        return Ok(DEFAULT_REFUSE);
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(ProtoError::out_of_range(
            "filters.refuse_seconds",
            secs,
            "a finite number >= 0",
        ));
    }
    Ok(Duration::try_from_secs_f64(secs).map_or(MAX_REFUSE, |d| d.min(MAX_REFUSE)))
}

/// A `Duration` as whole nanoseconds, saturating (584 years fit).
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A `Duration` as whole milliseconds, saturating.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Converts every element of a repeated field with `f`; an error names the element
/// (`tasks[3].resources`).
/// At most [`limits::MAX_LIST_ITEMS`] elements.
pub fn each<'a, P: 'a, D>(
    name: &'static str,
    items: &'a [P],
    mut f: impl FnMut(&'a P) -> Result<D, ProtoError>,
) -> Result<Vec<D>, ProtoError> {
    bounded_list(name, items.len())?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| f(item).map_err(at_index(name, i)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_types::{AgentId, OfferId, TaskId};

    #[test]
    fn quotas_round_trip_with_zero_and_unset_limits() {
        let gpu = ScalarName::new("gpu").unwrap();
        let fpga = ScalarName::new("fpga").unwrap();
        let q = Quota {
            guarantee: Resources::new().with_cpus_milli(1000),
            limit: QuotaLimits::at_most(
                Resources::new().with_mem_mib(64).with_scalar_milli(&gpu, 2),
            )
            .with_none_of(
                &Resources::new()
                    .with_disk_bytes(1)
                    .with_scalar_milli(&fpga, 1),
            ),
        };
        let p = v1::Quota::from(&q);
        let limit = p.limit.as_ref().unwrap();
        assert_eq!(limit.cpus_milli, None);
        assert_eq!(limit.disk_bytes, Some(0));
        assert_eq!(limit.scalars_milli.get("fpga"), Some(&0));
        assert_eq!(Quota::try_from(&p).unwrap(), q);
    }

    #[test]
    fn resources_round_trip_and_drop_zero_scalars() {
        let gpu = ScalarName::new("gpu").unwrap();
        let r = Resources::new()
            .with_cpus_milli(1500)
            .with_mem_mib(512)
            .with_disk_bytes(7)
            .with_scalar_milli(&gpu, 2000);
        let p = v1::Resources::from(&r);
        assert_eq!(p.scalars_milli.get("gpu"), Some(&2000));
        assert_eq!(Resources::try_from(&p).unwrap(), r);

        let mut with_zero = p.clone();
        with_zero.scalars_milli.insert("fpga".into(), 0);
        assert_eq!(Resources::try_from(with_zero).unwrap(), r);
    }

    #[test]
    fn bad_scalar_names_are_named_in_the_error() {
        let mut p = v1::Resources::default();
        p.scalars_milli.insert("cpus".into(), 1);
        let err = require::<_, Resources>("resources", Some(&p)).unwrap_err();
        assert!(matches!(err, ProtoError::InvalidResourceName { .. }));
        assert_eq!(err.field(), r#"resources.scalars_milli["cpus"]"#);
        assert_eq!(
            require::<v1::Resources, Resources>("resources", None),
            Err(ProtoError::missing("resources"))
        );
    }

    #[test]
    fn limits_distinguish_unset_from_zero() {
        let l = QuotaLimits::try_from(&v1::ResourceLimits {
            cpus_milli: Some(4000),
            mem_bytes: Some(0),
            disk_bytes: None,
            scalars_milli: [("gpu".to_owned(), 0)].into(),
        })
        .unwrap();
        let gpu = ScalarName::new("gpu").unwrap();
        assert!(
            l.allows(
                &Resources::new()
                    .with_cpus_milli(4000)
                    .with_disk_bytes(1 << 40)
            )
        );
        assert!(!l.allows(&Resources::new().with_cpus_milli(4001)));
        assert!(!l.allows(&Resources::new().with_mem_bytes(1)));
        assert!(!l.allows(&Resources::new().with_scalar_milli(&gpu, 1)));
        assert!(
            QuotaLimits::try_from(&v1::ResourceLimits::default())
                .unwrap()
                .is_unlimited()
        );

        let q = Quota::try_from(&v1::Quota::default()).unwrap();
        assert_eq!(q, Quota::default());
    }

    #[test]
    fn ids_roles_and_weights() {
        assert_eq!(
            parse_id::<AgentId>("agent_id", "a1").unwrap().as_str(),
            "a1"
        );
        let err = parse_id::<TaskId>("task_id", "../x").unwrap_err();
        assert_eq!(err.field(), "task_id");
        assert_eq!(parse_optional_id::<AgentId>("agent_id", Some("")), Ok(None));
        assert_eq!(parse_optional_id::<AgentId>("agent_id", None), Ok(None));
        let err = parse_ids::<OfferId>("offer_ids", &["ok".into(), "".into()]).unwrap_err();
        assert_eq!(err.field(), "offer_ids[1]");

        assert_eq!(
            parse_roles("roles", &["*".into(), "eng/batch".into()])
                .unwrap()
                .len(),
            2
        );
        let err = parse_roles("roles", &["eng".into(), "/x".into()]).unwrap_err();
        assert_eq!(err.field(), "roles[1]");
        assert!(parse_role("role", "a b").is_err());

        assert_eq!(parse_weight("weight", 2.0).unwrap().get(), 2.0);
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e300] {
            assert!(matches!(
                parse_weight("weight", bad),
                Err(ProtoError::OutOfRange { .. })
            ));
        }
        assert_eq!(
            parse_weight("weight", -1.0).unwrap_err().to_string(),
            "weight: -1.0 is out of range (from 0.001 to 1000000)"
        );
    }

    #[test]
    fn refuse_seconds_default_clamp_and_reject() {
        let f = |s: Option<f64>| refuse_duration(Some(&v1::Filters { refuse_seconds: s }));
        assert_eq!(refuse_duration(None), Ok(DEFAULT_REFUSE));
        assert_eq!(f(None), Ok(DEFAULT_REFUSE));
        assert_eq!(f(Some(0.25)), Ok(Duration::from_millis(250)));
        assert_eq!(f(Some(0.0)), Ok(Duration::ZERO));
        assert_eq!(f(Some(1e300)), Ok(MAX_REFUSE));
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            assert!(f(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn offers_carry_total_and_reserved() {
        let a = Allocation {
            unreserved: Resources::new().with_cpus_milli(1000),
            reserved: Resources::new().with_cpus_milli(500).with_mem_bytes(10),
        };
        let (total, reserved) = offer_resources(&a);
        assert_eq!(total.cpus_milli, 1500);
        assert_eq!(reserved.cpus_milli, 500);
        assert_eq!(reserved.mem_bytes, 10);
    }
}
