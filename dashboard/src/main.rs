use std::process::ExitCode;

use shopstream_common::{cli, logging};
use shopstream_dashboard::{Cli, run};

fn main() -> ExitCode {
    let cli: Cli = cli::parse_or_exit();
    logging::init(cli.log_format);
    cli::block_on(Some(2), async move { run(cli).await.map(|()| ExitCode::SUCCESS) })
}
