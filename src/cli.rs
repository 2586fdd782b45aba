//! The command line rendered for shells and for `man`: `headroom completions
//! SHELL` and `headroom man [COMMAND]`, both made from
//! [`crate::config::command`], so every flag of [`crate::config::FLAGS`] is
//! in them.

use crate::config::{command, FLAGS};
use clap_mangen::roff::{bold, roman, Roff};
use clap_mangen::Man;

/// Shell completions for `shell`.
pub fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command(), "headroom", &mut out);
    out
}

/// The man page: headroom(1), or a subcommand's, headroom-COMMAND(1).
/// `None` when there is no such subcommand.
pub fn man(name: Option<&str>) -> Option<String> {
    let mut cmd = command().disable_help_subcommand(true);
    cmd.build();
    let page = match name.filter(|n| *n != "headroom") {
        None => {
            let mut page = render(&Man::new(cmd));
            // Before the version, the sections clap does not write.
            let at = page.find("\n.SH VERSION").map_or(page.len(), |i| i + 1);
            page.insert_str(at, &main_page_sections());
            page
        }
        Some(name) => render(
            &Man::new(cmd.find_subcommand(name)?.clone())
                .source(format!("headroom {}", crate::build_info::VERSION_LINE)),
        ),
    };
    Some(page)
}

fn render(man: &Man) -> String {
    let mut out = Vec::new();
    man.render(&mut out).expect("writing to a Vec works");
    String::from_utf8(out).expect("the command's text is UTF-8")
}

/// headroom(1)'s own sections: the exit status, the environment and the
/// subcommands' pages.
fn main_page_sections() -> String {
    let mut roff = Roff::default();
    roff.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in [
        ("0", "run and node: stopped by a signal; check and status: no risk."),
        ("1", "run and node: could not start (the port is taken, the target is unusable); check and status: warning."),
        ("2", "check and status: critical, an OOM kill is close."),
        ("3", "check: the target or its cgroup could not be read; status: the daemon could not be reached, answered an error, or is not headroom."),
        ("64", "a usage error: a bad flag, value or configuration file (EX_USAGE)."),
    ] {
        roff.control("TP", []);
        roff.text([bold(code)]);
        roff.text([roman(meaning)]);
    }
    roff.control("SH", ["ENVIRONMENT"]);
    roff.text([roman(format!(
        "Every flag is also an environment variable: HEADROOM_ and the flag's name in upper snake case ({} for --{}). \
         Flags win over the environment, the environment over the file given with --config.",
        FLAGS[0].env(),
        FLAGS[0].name
    ))]);
    for (env, meaning) in [
        (
            "RUST_LOG",
            "The log filter (tracing's EnvFilter directives, such as headroom=debug,hyper=warn) when --log-level is not given.",
        ),
        (
            "HEADROOM_LISTEN, HEADROOM_CONFIG",
            "Also read by headroom status: the local daemon is asked at the port of its --listen.",
        ),
    ] {
        roff.control("TP", []);
        roff.text([bold(env)]);
        roff.text([roman(meaning)]);
    }
    roff.control("SH", ["SEE ALSO"]);
    let subs: Vec<String> = man_subcommands().map(|n| format!("headroom-{n}(1)")).collect();
    roff.text([roman(subs.join(", "))]);
    // Without roff's preamble: the page has it.
    let text = roff.render();
    let from = text.find(".SH").unwrap_or(0);
    text[from..].to_owned()
}

/// The subcommands that have a page of their own.
fn man_subcommands() -> impl Iterator<Item = String> {
    command()
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| c.get_name().to_owned())
        .collect::<Vec<_>>()
        .into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_main_page_has_every_setting_and_each_subcommand_a_page() {
        let page = man(None).unwrap();
        for f in FLAGS {
            let flag = format!("\\fB\\-\\-{}\\fR", f.name.replace('-', "\\-"));
            assert!(page.contains(&flag), "{flag} missing:\n{page}");
        }
        assert_eq!(page.matches(".ds Aq").count(), 2, "one preamble:\n{page}");
        let exit = page.find(".SH \"EXIT STATUS\"").expect("an exit status section");
        assert!(exit < page.find(".SH VERSION").unwrap(), "{page}");
        assert!(page.contains("headroom\\-check(1)"), "{page}");
        for sub in man_subcommands() {
            assert!(
                man(Some(&sub)).unwrap().contains(&format!(".TH headroom-{sub} 1")),
                "{sub}"
            );
        }
        assert!(man(Some("nope")).is_none());
    }
}
