//! An echo server on the ringfort engine: every byte received is sent back, without a
//! copy (the received blocks themselves are queued for sending).
//!
//! ```sh
//! cargo run --release -p ringfort --example echo -- --port 7000 --cores 2
//! ```

use std::net::SocketAddr;

use clap::Parser;
use ringfort::pool::BufChain;
use ringfort::{ConnId, Ctx, Engine, EngineConfig, Handler};

#[derive(Parser)]
#[command(about = "Echo server on the ringfort io_uring engine")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: std::net::IpAddr,
    /// TCP port.
    #[arg(long, default_value_t = 7000)]
    port: u16,
    /// Cores to run (default: every CPU this process may use).
    #[arg(long)]
    cores: Option<usize>,
}

struct Echo {
    addr: SocketAddr,
}

impl Handler for Echo {
    type Msg = ();

    fn on_start(&mut self, cx: &mut Ctx<'_, ()>) {
        if let Err(e) = cx.listen(self.addr) {
            eprintln!("core {}: cannot listen on {}: {e}", cx.core(), self.addr);
            cx.stop_engine(std::time::Duration::ZERO);
        }
    }

    fn on_data(&mut self, cx: &mut Ctx<'_, ()>, conn: ConnId, data: &mut BufChain) {
        let all = data.split_to(data.len());
        let _ = cx.send(conn, all);
    }
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let addr = SocketAddr::new(args.bind, args.port);
    let mut config = EngineConfig::default();
    if let Some(n) = args.cores {
        config.cpus = (0..n).collect();
    }
    let engine = match Engine::start(config, move |_| Echo { addr }) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("ringfort echo: {e}");
            std::process::exit(1);
        }
    };
    println!("echo server on {addr}, {} cores", engine.cores());
    if let Err(e) = engine.wait() {
        eprintln!("ringfort echo: {e}");
        std::process::exit(1);
    }
}
