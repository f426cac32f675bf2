mkdir -p pkg-1.0/bin && echo tool > pkg-1.0/bin/tool && echo readme > pkg-1.0/README
tar -cf with-prefix.tar pkg-1.0
tar -cf archive.tar pkg-1.0/README
tar -czf archive.tar.gz pkg-1.0/bin
tar -cPf abs-paths.tar "$PWD/pkg-1.0/README" 2>/dev/null || tar -cf abs-paths.tar pkg-1.0/README
rm -rf pkg-1.0
