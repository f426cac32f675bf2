mkdir -p logs/keep dir
for f in a.md b.md important.md logs/1.log logs/keep/k.log logs/keep/drop.tmp dir/x dir/y; do echo "$f" > "$f"; done
cat > .dockerignore <<'IGN'
*.md
!important.md
logs
!logs/keep
logs/keep/*.tmp
dir
!dir/y
IGN
