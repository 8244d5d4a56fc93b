//! The series workers export (through `switchboard dev`'s scrape, where they
//! share a process with an edge).

use switchboard_proto::telemetry::{Kind, PLAIN, Series};

pub const BATCH_SIZE: &str = "switchboard_persist_batch_size";
pub const STORE_DURATION: &str = "switchboard_persist_store_duration_seconds";
pub const COMMANDS_RETURNED: &str = "switchboard_commands_returned_total";
pub const WA_SENT: &str = "switchboard_wa_sent_total";
pub const WA_RETRIES: &str = "switchboard_wa_retries_total";
pub const WA_FAILED: &str = "switchboard_wa_failed_total";

pub const SERIES: &[Series] = &[
    Series::new(BATCH_SIZE, Kind::Histogram, "Messages the persist worker stores in one transaction.", PLAIN),
    Series::new(STORE_DURATION, Kind::Histogram, "Time to store one batch of messages.", PLAIN),
    Series::new(
        COMMANDS_RETURNED,
        Kind::Counter,
        "Commands handed back to the bus for redelivery after a failure (the bus delivers them again).",
        PLAIN,
    ),
    Series::new(WA_SENT, Kind::Counter, "WhatsApp messages the Graph API accepted.", PLAIN),
    Series::new(WA_RETRIES, Kind::Counter, "WhatsApp sends tried again after a failure.", PLAIN),
    Series::new(WA_FAILED, Kind::Counter, "WhatsApp sends given up.", PLAIN),
];
