"""The examples every ``--help`` ends with, one list per command, kept true by a test.

tests/test_cli_examples.py runs every line below, in :data:`STORY` order, against a real
docker-registry (``localhost:5000`` is replaced by the test registry's address) in a directory
holding ``./view`` (a small directory with an ELF program), ``./sbom.json``, ``./tree`` (a file
naming ``/opt/view``) and ``./layer.tar.gz``. An example that stops working fails that test, and
a command without examples fails it too. Lines are what a user types: no placeholders.
"""

from __future__ import annotations

import click

EXAMPLES: dict[str, tuple[tuple[str, str], ...]] = {
    "push-view": (
        ("Push a view, one layer per package, with an annotation",
         "ocikit push-view ./view localhost:5000/views/flux:v1 -a team=hpc"),
        ("One gzip directory layer that oras pull unpacks",
         "ocikit push-view ./view localhost:5000/views/flux:v1-gz --layers single"),
    ),
    "tags": (("List a repository's tags", "ocikit tags localhost:5000/views/flux"),),
    "manifest": (
        ("Print a manifest", "ocikit manifest localhost:5000/views/flux:v1"),
        ("Only its descriptor (digest, size, media type)", "ocikit manifest --descriptor localhost:5000/views/flux:v1"),
    ),
    "resolve": (("The digest a tag points at", "ocikit resolve localhost:5000/views/flux:v1"),),
    "copy": (
        ("Copy to another tag with every referrer", "ocikit copy localhost:5000/views/flux:v1 "
                                                    "localhost:5000/views/flux:v1-copy --referrers"),
        ("Copy into an OCI layout directory", "ocikit copy localhost:5000/views/flux:v1 oci:./layout:v1"),
    ),
    "pull": (
        ("Pull a view, verified and relocated to ./flux", "ocikit pull localhost:5000/views/flux:v1 ./flux"),
        ("Build it once in a node cache, then link it into place",
         "ocikit pull localhost:5000/views/flux:v1 ./flux-cached --cache-dir ./node-cache"),
    ),
    "wait": (("Block until the pull has finished (exit 8 on timeout)", "ocikit wait ./flux --timeout 60"),),
    "label": (
        ("Label a pushed view", "ocikit label localhost:5000/views/flux:v1 org.example.stage=tested"),
        ("Show its labels", "ocikit label localhost:5000/views/flux:v1"),
    ),
    "attach": (("Attach an SBOM as a referrer", "ocikit attach localhost:5000/views/flux:v1 ./sbom.json "
                                                "--artifact-type application/spdx+json -a tool=syft"),),
    "discover": (("The tree of referrers", "ocikit discover localhost:5000/views/flux:v1"),),
    "relocate": (("Rewrite a tree's paths from one prefix to another",
                  "ocikit relocate ./tree --from /opt/view --to /scratch/view"),),
    "compat": (("What a view needs from a host", "ocikit compat scan ./view"),),
    "compat scan": (("What a view needs from a host", "ocikit compat scan ./view"),),
    "compat host": (("What this host offers", "ocikit compat host"),),
    "compat check": (
        ("Can this host run a pushed view?", "ocikit compat check localhost:5000/views/flux:v1"),
        ("Check a directory before pushing it", "ocikit compat check ./view"),
    ),
    "compat attach": (("Attach the requirements scanned from a directory",
                       "ocikit compat attach localhost:5000/views/flux:v1 ./view"),),
    "ztoc": (("Index the gzip layers for lazy reads", "ocikit ztoc build localhost:5000/views/flux:v1-gz"),),
    "ztoc build": (("Index every gzip layer, small ones included",
                    "ocikit ztoc build localhost:5000/views/flux:v1-gz --min-layer-size 0"),),
    "ztoc convert": (("A SOCI index manifest v2 image (what current soci-snapshotter nodes read)",
                      "ocikit ztoc convert localhost:5000/views/flux:v1-gz --min-layer-size 0"),),
    "ztoc ls": (("The zTOCs attached to an image", "ocikit ztoc ls localhost:5000/views/flux:v1-gz"),),
    "ztoc info": (("Describe them", "ocikit ztoc info localhost:5000/views/flux:v1-gz"),),
    "ztoc build-file": (("The zTOC of a local layer file", "ocikit ztoc build-file ./layer.tar.gz -o ./layer.ztoc"),),
    "get-file": (("Fetch one file through the zTOC, without the whole layer",
                  "ocikit get-file localhost:5000/views/flux:v1-gz view/share/data -o ./data"),),
    "mount": (("Mount it lazily: files are fetched on first read; Ctrl-C unmounts",
               "ocikit mount localhost:5000/views/flux:v1-gz ./mnt"),),
    "cache": (("What a node cache holds", "ocikit cache ls --cache-dir ./node-cache"),),
    "cache ls": (("What a node cache holds", "ocikit cache ls --cache-dir ./node-cache"),),
    "cache gc": (("Evict trees unused for a week", "ocikit cache gc --cache-dir ./node-cache --max-age 7d"),),
    "similarity": (("How much two views share", "ocikit similarity localhost:5000/views/flux:v1 "
                                                "localhost:5000/views/flux:v1-gz"),),
}

# The order the examples test runs them in: later examples use what earlier ones made.
STORY = (
    "push-view", "tags", "manifest", "resolve", "copy", "pull", "wait", "label", "attach", "discover",
    "relocate", "compat", "compat scan", "compat host", "compat check", "compat attach",
    "ztoc", "ztoc build", "ztoc convert", "ztoc ls", "ztoc info", "ztoc build-file", "get-file", "mount",
    "cache", "cache ls", "cache gc", "similarity",
)


def format_examples(path: str) -> list[str]:
    """The help section's lines for command ``path`` ("compat scan"); empty when it has none."""
    lines: list[str] = []
    for comment, command in EXAMPLES.get(path, ()):
        lines += [f"# {comment}", f"$ {command}", ""]
    return lines[:-1]


def add_examples(command: click.Command, path: str) -> click.Command:
    """End ``command``'s help (and each sub-command's) with its examples. Idempotent."""
    if getattr(command, "_ocikit_examples", False):
        return command
    command._ocikit_examples = True  # type: ignore[attr-defined]
    original = command.format_epilog

    def format_epilog(ctx: click.Context, formatter: click.HelpFormatter) -> None:
        lines = format_examples(path)
        if lines:
            with formatter.section("Examples"):
                for line in lines:
                    formatter.write(f"{'':>{formatter.current_indent}}{line}\n" if line else "\n")
        original(ctx, formatter)

    command.format_epilog = format_epilog  # type: ignore[method-assign]
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            add_examples(sub, f"{path} {name}")
    return command
