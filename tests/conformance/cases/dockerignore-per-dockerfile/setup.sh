rm Dockerfile
mkdir -p build
for f in a.txt b.txt c.txt; do echo $f > $f; done
printf 'FROM {{BASE}}\nCOPY . /ctx/\n' > build/app.Dockerfile
echo a.txt > .dockerignore
printf 'b.txt\nbuild\n' > build/app.Dockerfile.dockerignore
