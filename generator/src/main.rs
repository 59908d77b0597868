use std::process::ExitCode;

use shopstream_common::{cli, logging};
use shopstream_generator::{Cli, GeneratorError, run};

fn main() -> ExitCode {
    let cli: Cli = cli::parse_or_exit();
    logging::init(cli.log_format);
    cli::block_on(Some(2), async move {
        let outcome = run(cli).await?;
        if outcome.succeeded() {
            return Ok(ExitCode::SUCCESS);
        }
        tracing::error!(
            delivery_failures = outcome.summary.delivery_failures,
            "some messages were not delivered; the summary counts only delivered ones"
        );
        Ok::<_, GeneratorError>(ExitCode::FAILURE)
    })
}
