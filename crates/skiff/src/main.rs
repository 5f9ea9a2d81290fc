//! The skiff binary.

mod analyze;
mod cli;
mod client;
mod paths;
mod serve;
mod table;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Offline tools need no server and no async runtime.
    let offline = match &cli.command {
        Command::Validate(args) => Some(cli::validate::run(args)),
        Command::Autoscaler(cli::AutoscalerCommand::Decide) => Some(cli::autoscaler::decide()),
        Command::Autoscaler(cli::AutoscalerCommand::Simulate(args)) => {
            Some(cli::autoscaler::simulate(args))
        }
        _ => None,
    };
    if let Some(r) = offline {
        return match r {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    // The example apps run their own runtime.
    if let Command::Example { name } = &cli.command {
        return match name.as_str() {
            "hello" => skiff_example_hello::main_from_env(),
            _ => skiff_example_autoscale::main_from_env(),
        };
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("SKIFF_LOG")
                .unwrap_or_else(|_| EnvFilter::new("info,hyper=warn,h2=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let data_dir = cli.data_dir.clone().unwrap_or_else(paths::default_data_dir);
    let client = || client::Client::discover(cli.server.clone(), &data_dir);
    match &cli.command {
        Command::Serve(args) => {
            serve::run(serve::ServeOptions {
                data_dir: data_dir.clone(),
                listen: args.listen.clone(),
                local_listen: args.local_listen.clone(),
                admin: args.admin.clone(),
                image_map: args.image_map.clone(),
                gateway_threads: args.gateway_threads,
                gateway_address: args.gateway_address.clone(),
                gateway_port_map: args.gateway_port_map.clone(),
                access_log: args.access_log.clone(),
                access_log_encoding: args.access_log_encoding.clone(),
                access_log_filter: args.access_log_filter.clone(),
                health_listen: Some(args.health_listen.clone())
                    .filter(|a| !a.eq_ignore_ascii_case("off")),
                termination_drain: args.termination_drain_duration,
                proxy_protocol: args.proxy_protocol.clone(),
                xff_trusted_hops: args.xff_num_trusted_hops,
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Apply(args) => cli::apply::run(&client(), args).await,
        Command::Get(args) => cli::get::run(&client(), args).await,
        Command::Delete(args) => cli::delete::run(&client(), args).await,
        Command::Describe(args) => cli::describe::run(&client(), args).await,
        Command::Service(cmd) => cli::kn::service(&client(), cmd).await,
        Command::Revision(cmd) => cli::kn::revision(&client(), cmd).await,
        Command::Route(cmd) => cli::kn::route(&client(), cmd).await,
        Command::Logs(args) => cli::logs::run(&client(), args).await,
        Command::Analyze(args) => cli::analyze::run(client, args).await,
        Command::ProxyConfig(args) => cli::proxy_config::run(&client(), args).await,
        Command::Example { .. } | Command::Validate(_) | Command::Autoscaler(_) => {
            unreachable!("handled before the runtime starts")
        }
    }
}
