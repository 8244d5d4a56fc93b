//! The agents with a socket on this edge and how available each said it is:
//! what the edge announces to the cluster (`GET /api/v1/agents` and
//! round-robin assignment read every edge's announcement). An agent with no
//! socket on any edge is offline; one whose edge died lapses with its lease.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use switchboard_bus::roster::AgentPresence;
use switchboard_proto::model::{Availability, Timestamp};
use tokio::sync::Notify;

use crate::auth::Identity;

#[derive(Default)]
pub struct AgentsHere {
    agents: Mutex<HashMap<String, Here>>,
    /// Wakes the edge's announcement: a change is told at once, not at the next renewal.
    pub changed: Arc<Notify>,
}

struct Here {
    name: String,
    sockets: usize,
    availability: Availability,
    since_ms: i64,
}

impl AgentsHere {
    /// A socket of this agent connected; true for its first on this edge.
    pub fn connect(&self, agent: &Identity) -> bool {
        let mut agents = self.agents.lock().expect("agents lock");
        let here = agents.entry(agent.user_id.clone()).or_insert_with(|| Here {
            name: agent.name.clone(),
            sockets: 0,
            availability: Availability::Online,
            // Connecting says less than setting: an `away` said on another edge wins.
            since_ms: 0,
        });
        here.sockets += 1;
        let first = here.sockets == 1;
        drop(agents);
        if first {
            self.changed.notify_one();
        }
        first
    }

    /// A socket of this agent went; its last one takes it off this edge.
    pub fn disconnect(&self, agent_id: &str) {
        let mut agents = self.agents.lock().expect("agents lock");
        let Some(here) = agents.get_mut(agent_id) else { return };
        here.sockets = here.sockets.saturating_sub(1);
        if here.sockets == 0 {
            agents.remove(agent_id);
            drop(agents);
            self.changed.notify_one();
        }
    }

    /// What a connected agent said, as the cluster will see it; `None` once
    /// its sockets have gone.
    pub fn set(&self, agent: &Identity, availability: Availability) -> Option<AgentPresence> {
        let mut agents = self.agents.lock().expect("agents lock");
        let here = agents.get_mut(&agent.user_id)?;
        here.availability = availability;
        here.since_ms = Timestamp::now().0;
        let presence = presence(&agent.user_id, here);
        drop(agents);
        self.changed.notify_one();
        Some(presence)
    }

    pub fn snapshot(&self) -> Vec<AgentPresence> {
        let agents = self.agents.lock().expect("agents lock");
        agents.iter().map(|(id, here)| presence(id, here)).collect()
    }
}

fn presence(id: &str, here: &Here) -> AgentPresence {
    AgentPresence {
        id: id.to_owned(),
        name: here.name.clone(),
        availability: here.availability,
        since_ms: here.since_ms,
    }
}
