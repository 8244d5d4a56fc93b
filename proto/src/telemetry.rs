//! The description of a metric series: each crate lists the series it
//! exports, and the process declares them all at start, so a scrape names
//! every one, with its help and type, before anything has happened.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    /// The name the Prometheus text format gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Label pairs of one series.
pub type Labels = &'static [(&'static str, &'static str)];

#[derive(Debug)]
pub struct Series {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    /// The label sets known in advance, each exported at zero from the start
    /// (`&[&[]]`: one series without labels). Empty: the labels' values come
    /// with the samples (a route, a status), and until the first one only the
    /// help and type are exported.
    pub zeros: &'static [Labels],
}

impl Series {
    pub const fn new(name: &'static str, kind: Kind, help: &'static str, zeros: &'static [Labels]) -> Self {
        Self { name, kind, help, zeros }
    }
}

/// No labels: one series.
pub const PLAIN: &[Labels] = &[&[]];
