echo x > x.txt
printf 'Dockerfile\n.dockerignore\n' > .dockerignore
