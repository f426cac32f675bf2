mkdir -p a/b/c logs docs/sub build node_modules/x .git
for f in keep.txt secret.key a/x.tmp a/b/y.tmp a/b/c/z.tmp a/b/c/keep.md logs/1.log logs/2.log \
         docs/readme.md docs/sub/deep.md build/out node_modules/x/index.js .git/HEAD notes.bak \
         q1.txt q22.txt; do echo "$f" > "$f"; done
cat > .dockerignore <<'IGN'
# comments and blank lines are ignored

*.key
**/*.tmp
logs
/build
./node_modules
.git
docs/*/deep.md
*.bak
q?.txt
IGN
