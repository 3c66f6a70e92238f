// Command release builds the release artifacts (internal/release): it backs
// `make image`, `make image-push` and `make release`.
//
//	release image   [-image REPO] [-platforms linux/amd64,linux/arm64] [-image-dir bin/image]
//	release push    -to HOST/REPO [-image-dir bin/image]
//	release release [-image REPO] [-platforms …] [-plugin-platforms …] [-image-dir …] [-out bin/release]
//	release verify  [-out bin/release]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/kubeseed/rollouts/internal/release"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: release image|push|release|verify [flags]")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet(args[0], flag.ExitOnError)
	image := fs.String("image", release.DefaultImage, "Repository of the controller image.")
	platforms := fs.String("platforms", join(release.ImagePlatforms), "Platforms of the controller image.")
	pluginPlatforms := fs.String("plugin-platforms", join(release.PluginPlatforms), "Platforms of the plugin archives.")
	imageDir := fs.String("image-dir", filepath.Join(root, "bin", "image"), "Where the image is written.")
	out := fs.String("out", filepath.Join(root, "bin", "release"), "Where the release is written.")
	to := fs.String("to", "", "push: the repository to push to (host/repo); the tag is the version.")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	switch args[0] {
	case "verify":
		if err := release.VerifyChecksums(*out); err != nil {
			return err
		}
		fmt.Printf("%s: every file matches %s\n", *out, release.ChecksumsFile)
		return nil
	case "push":
		return push(ctx, *imageDir, *to)
	}
	o := release.Options{Root: root, Image: *image, ImageDir: *imageDir, ReleaseDir: *out, Log: os.Stderr}
	if o.Build, err = release.Describe(ctx, root); err != nil {
		return err
	}
	if o.ImagePlatforms, err = release.ParsePlatforms(*platforms); err != nil {
		return err
	}
	if o.PluginPlatforms, err = release.ParsePlatforms(*pluginPlatforms); err != nil {
		return err
	}
	switch args[0] {
	case "image":
		img, err := release.BuildImage(ctx, o)
		if err != nil {
			return err
		}
		fmt.Println(img.Digest)
		return nil
	case "release":
		_, err := release.Release(ctx, o)
		return err
	default:
		return fmt.Errorf("unknown command %q: want image, push, release or verify", args[0])
	}
}

// push sends the image that `release image` wrote to repo, tagged with the
// version it was built as.
func push(ctx context.Context, imageDir, repo string) error {
	if repo == "" {
		return fmt.Errorf("push: set REGISTRY=host/repo (make image-push REGISTRY=…)")
	}
	if strings.ContainsAny(repo, "@") || strings.Contains(repo[strings.LastIndex(repo, "/")+1:], ":") {
		return fmt.Errorf("push: REGISTRY=%s: give a repository without a tag or digest; the tag is the version", repo)
	}
	idx, tag, err := release.ReadLayout(filepath.Join(imageDir, "oci"))
	if err != nil {
		return fmt.Errorf("reading the image (run make image first): %w", err)
	}
	ref, err := release.Push(ctx, idx, repo+":"+tag)
	if err != nil {
		return err
	}
	fmt.Println(ref)
	return nil
}

func join(ps []release.Platform) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}
