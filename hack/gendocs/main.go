// Command gendocs writes the reference of the kubectl plugin, one Markdown
// page per command, into the directory given (make generate: docs/cli).
package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra/doc"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubeseed/rollouts/pkg/cli"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gendocs DIR")
		os.Exit(2)
	}
	if err := generate(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "gendocs:", err)
		os.Exit(1)
	}
}

func generate(dir string) error {
	// Pages of commands that no longer exist must go too.
	old, err := filepath.Glob(filepath.Join(dir, "*.md"))
	if err != nil {
		return err
	}
	for _, f := range old {
		if err := os.Remove(f); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// Flag defaults that depend on the machine (the kubeconfig cache under
	// $HOME) read the same everywhere.
	if err := os.Setenv("HOME", "~"); err != nil {
		return err
	}
	root := cli.NewRootCommand(genericiooptions.IOStreams{In: os.Stdin, Out: io.Discard, ErrOut: io.Discard})
	root.DisableAutoGenTag = true // no dates: the pages only change with the commands
	return doc.GenMarkdownTree(root, dir)
}
