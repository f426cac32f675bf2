echo s > 'with space.txt'
mkdir -p 'dir with space/in ner' && echo n > 'dir with space/in ner/f i le'
echo u > 'ünïcødé.txt'
mkdir -p '日本語' && echo j > '日本語/ファイル.txt'
echo '{}' > 'a*star.json'
echo q > 'q?.txt'
echo plain > qx.txt
