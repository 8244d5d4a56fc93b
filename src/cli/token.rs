//! `switchboard token`: a signed token for trying things out or for a bot.

use switchboard_edge::auth::{Claims, mint};

#[derive(clap::Args)]
pub struct TokenArgs {
    /// The secret tokens are signed with.
    #[arg(long, env = "SWITCHBOARD_JWT_SECRET")]
    jwt_secret: String,
    /// User id (`sub`).
    #[arg(long)]
    sub: String,
    /// customer, agent, bot or service.
    #[arg(long, default_value = "customer")]
    role: String,
    #[arg(long)]
    name: Option<String>,
    /// WhatsApp number, digits only.
    #[arg(long)]
    phone: Option<String>,
    /// Conversation ids a customer may join, comma-separated.
    #[arg(long, value_delimiter = ',')]
    conversations: Vec<String>,
    /// Seconds until it expires.
    #[arg(long, default_value_t = 24 * 3600)]
    ttl: u64,
}

pub fn run(args: TokenArgs) -> anyhow::Result<()> {
    if switchboard_proto::model::Role::parse(&args.role).is_none() {
        anyhow::bail!("role must be customer, agent, bot or service, not {:?}", args.role);
    }
    let claims = Claims {
        sub: args.sub,
        role: args.role,
        name: args.name,
        phone: args.phone,
        email: None,
        conversations: (!args.conversations.is_empty()).then_some(args.conversations),
        site: None,
        jti: None,
        exp: expires_in(args.ttl),
    };
    println!("{}", mint(&args.jwt_secret, &claims));
    Ok(())
}

pub fn expires_in(seconds: u64) -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    now.as_secs() + seconds
}
